//! placeholder
pub mod ballastd;
