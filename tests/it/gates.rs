//! The test modules this build leaves out, and how to build them in.
//!
//! A module whose tests need what a developer's machine may lack is
//! compiled only with a cargo feature (Cargo.toml `[features]`);
//! `make test` (scripts/test.sh) turns every such feature on. Without its
//! feature, the module's tests do not exist in the binary, so none of them
//! can pass without having run; the test here stands in for them, and its
//! name and the note it writes in every run (past the harness's capture of
//! a passing test's output) say what was left out and how to run it.

use std::io::Write;

/// Writes `note` to the terminal whatever the harness captures.
fn announce(note: &str) {
    let _ = writeln!(std::io::stderr(), "note: {note}");
}

#[cfg(not(feature = "test-control-plane"))]
#[test]
fn kubernetes_is_compiled_out_without_feature_test_control_plane() {
    announce(
        "the tests of `kubernetes` and `kubernetes_secrets` are compiled out: they need a kube-apiserver and etcd \
         (scripts/envtest.sh, which they start when it is not up). Run them with \
         `cargo test --test it --features test-control-plane` (make test does).",
    );
}

#[cfg(not(feature = "test-root"))]
#[test]
fn disk_faults_is_compiled_out_without_feature_test_root() {
    announce(
        "the tests of `disk_faults` are compiled out: they need root (they mount a tmpfs \
         and fill it). Run them as root with `cargo test --test it --features test-root` \
         (make test does).",
    );
}

#[cfg(not(feature = "test-otel-sdk"))]
#[test]
fn otlp_sdk_is_compiled_out_without_feature_test_otel_sdk() {
    announce(
        "the tests of `otlp_sdk` are compiled out: they install the OpenTelemetry Python SDK \
         from PyPI into a venv (scripts/otel-python-sdk.sh, which they run) and need python3. \
         Run them with `cargo test --test it --features test-otel-sdk` (make test does).",
    );
}

#[cfg(not(feature = "test-otel-collector"))]
#[test]
fn otel_collector_is_compiled_out_without_feature_test_otel_collector() {
    announce(
        "the tests of `otel_collector` are compiled out: they need an OpenTelemetry Collector \
         built from Go modules (scripts/otelcol.sh builds it once, in minutes, and caches it). \
         Run them with `cargo test --test it --features test-otel-collector` (make test does).",
    );
}
