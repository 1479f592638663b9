//! `ballastd`: the operator binary.
fn main() {}
