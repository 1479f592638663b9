//! The integration-test harness of ballast: real components started and stopped by the tests themselves.
//!
//! - [`etcd`]: a throwaway etcd on free loopback ports, killed on drop.
//! - [`objects`]: sample hosts and roles.
//! - [`wait`]: polling a condition with a deadline (never sleep to synchronise).

pub mod etcd;
pub mod objects;
pub mod wait;

pub use etcd::TestEtcd;
