#!/usr/bin/env bash
# Everything `make test` runs, in order: lint, the control plane the
# Kubernetes tests need and the OpenTelemetry Collector of the collector tests
# (each built once into ~/.cache/logs-distributor), the OpenTelemetry Python
# SDK the otlp_sdk tests run (installed once there), every cargo test of every
# crate in the workspace, the browser test. The control plane is stopped on
# the way out.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/lint.sh
scripts/otelcol.sh
scripts/envtest.sh up
trap 'scripts/envtest.sh down >/dev/null 2>&1 || true' EXIT
scripts/otel-python-sdk.sh >/dev/null
cargo test --locked --workspace --all-targets --features logs-distributor/test-control-plane,logs-distributor/test-root,logs-distributor/test-otel-sdk,logs-distributor/test-otel-collector
cargo test --locked --workspace --doc
scripts/prometheus-test.sh
scripts/dockerfile-lint.sh
scripts/chart-test.sh
scripts/schemathesis.sh
scripts/browser-test.sh
