//! What the test modules share.

pub mod common;
pub mod faults;
pub mod kube;
