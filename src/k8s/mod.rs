//! Kubernetes: the `Analyzer` custom resource and (next) the controller that
//! turns Analyzers into the live routing table.

pub mod crd;

pub use crd::{Analyzer, AnalyzerSpec, AnalyzerStatus, DeclaredHealth};
