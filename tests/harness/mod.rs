//! placeholder

pub mod docker;
pub mod sshd;
