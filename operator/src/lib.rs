//! ballastd as a library: store, hosts, planner, reconciler, leader election, metrics and API, wired together by
//! `main.rs` and the tests.

pub mod access;
pub mod api;
pub mod aws;
pub mod desired;
pub mod etcd_local;
pub mod hosts;
pub mod labels;
pub mod leader;
pub mod metrics;
pub mod plan;
pub mod proxy;
pub mod reconcile;
pub mod rollout;
pub mod runtime;
pub mod store;
pub mod tier;
