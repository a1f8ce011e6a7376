//! The files of `tests/fixtures/`: requests, configurations and data files
//! the tests use as they are.

use serde::de::DeserializeOwned;
use std::path::PathBuf;

/// The path of `tests/fixtures/{name}`.
pub(crate) fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The text of `tests/fixtures/{name}`, byte for byte.
pub(crate) fn text(name: &str) -> String {
    let path = path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// `tests/fixtures/{name}` read as YAML into `T`.
pub(crate) fn yaml<T: DeserializeOwned>(name: &str) -> T {
    serde_saphyr::from_str(&text(name))
        .unwrap_or_else(|e| panic!("fixture {name} is not the YAML expected: {e}"))
}
