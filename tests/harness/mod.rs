//! The integration-test harness of ballast: real components started and stopped by the tests themselves.
//!
//! - [`etcd`]: a throwaway etcd on free loopback ports, killed on drop.
//! - [`objects`]: sample hosts and roles.
//! - [`process`]: whether a process still runs; killing one by PID.
//! - [`wait`]: polling a condition with a deadline (never sleep to synchronise).

pub mod etcd;
pub mod objects;
pub mod process;
pub mod wait;

pub use etcd::TestEtcd;
