//! The accounting job (in progress).
fn main() {}
