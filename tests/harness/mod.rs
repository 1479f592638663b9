//! The integration-test harness of ballast: real components started and stopped by the tests themselves.
//!
//! - [`etcd`]: a throwaway etcd (or a cluster of them) on free loopback ports, killed on drop.
//! - [`ballastd`]: the real `ballastd` and `ballast` binaries, built once and run on free ports.
//! - [`moto`]: a throwaway moto server (AWS API mock) on a free loopback port, killed on drop.
//! - [`docker`]: the local Docker engine, test images, and cleanup of the containers a test made.
//! - [`docker_proxy`]: a recording proxy in front of a Docker socket, to count and time API calls.
//! - [`sshd`]: a throwaway sshd on loopback with its own host key, client key and known_hosts.
//! - [`objects`]: sample hosts and roles.
//! - [`process`]: whether a process still runs; killing one by PID.
//! - [`raw_http`]: HTTP/1.1 written by hand over TCP (any `Host`, any header, half a request).
//! - [`wait`]: polling a condition with a deadline (never sleep to synchronise).

pub mod ballastd;
pub mod docker;
pub mod docker_proxy;
pub mod etcd;
pub mod moto;
pub mod objects;
pub mod process;
pub mod raw_http;
pub mod sshd;
pub mod wait;

pub use etcd::{TestEtcd, TestEtcdCluster};
