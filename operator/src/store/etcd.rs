//! The store on a real etcd, through etcd-client.
