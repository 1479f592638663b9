//! An in-memory store with the same semantics as the etcd one, for fast tests.
