#!/usr/bin/env bash
# otelcol.sh: build an OpenTelemetry Collector once, with the collector
# builder, from scripts/fixtures/otelcol-builder.yaml, and print its path.
#
#   scripts/otelcol.sh            build if missing, print the path of the binary
#   scripts/otelcol.sh -- ARGS    build if missing, then run the collector with ARGS
#
# The builder (go.opentelemetry.io/collector/cmd/builder) is taken at the
# manifest's dist.version, the release of every module in the manifest. The
# binary is rebuilt when the manifest differs from the one it was built from.
#
# Environment:
#   LD_CACHE     cache root (default ~/.cache/logs-distributor); the binary lands in
#                $LD_CACHE/otelcol-$VERSION/otelcol, Go caches in $LD_CACHE/go-{build,mod}
#                (shared with scripts/helm.sh and scripts/envtest.sh)
#   LD_OTELCOL   a collector binary to use instead (printed as is; not checked)
set -euo pipefail

MANIFEST=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/fixtures/otelcol-builder.yaml
VERSION=$(sed -n 's/^[[:space:]]*version:[[:space:]]*\([0-9][0-9.]*\)[[:space:]]*$/\1/p' "$MANIFEST" | head -n 1)

LD_CACHE=${LD_CACHE:-$HOME/.cache/logs-distributor}
[[ $LD_CACHE == /* ]] || LD_CACHE=$PWD/$LD_CACHE
DIR=$LD_CACHE/otelcol-$VERSION
BIN=$DIR/otelcol

log() { printf 'otelcol.sh: %s\n' "$*" >&2; }
die() { printf 'otelcol.sh: error: %s\n' "$*" >&2; exit 1; }

current() { [[ -x $BIN ]] && cmp -s "$MANIFEST" "$DIR/manifest.yaml"; }

# step LOGFILE DESCRIPTION CMD...: quiet unless it fails.
step() {
    local logf=$1 what=$2; shift 2
    log "$what"
    if ! "$@" >>"$logf" 2>&1; then
        printf 'otelcol.sh: error: %s failed; its last output (full log: %s):\n' "$what" "$logf" >&2
        tail -n 30 "$logf" >&2
        exit 1
    fi
}

build() {
    [[ -n $VERSION ]] || die "no dist.version in $MANIFEST"
    current && return 0
    command -v go >/dev/null || die "go is not on PATH (needed to build the collector $VERSION)"
    mkdir -p "$DIR"
    if command -v flock >/dev/null; then
        exec 8>"$DIR.lock"
        flock 8
        current && { exec 8>&-; return 0; } # built meanwhile by another invocation
    fi
    export GOCACHE=$LD_CACHE/go-build GOMODCACHE=$LD_CACHE/go-mod
    export GOFLAGS=-modcacherw GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off
    local logf=$DIR/build.log t0=$SECONDS
    : >"$logf"
    rm -rf "$DIR/build" "$DIR/builder-bin"
    step "$logf" "installing the collector builder v$VERSION" \
        env GOBIN="$DIR/builder-bin" go install -trimpath "go.opentelemetry.io/collector/cmd/builder@v$VERSION"
    cp "$MANIFEST" "$DIR/build-manifest.yaml"
    # The builder's own `go mod tidy` fails on test-only imports of some
    # contrib modules that the module proxy does not serve. So the builder
    # generates the sources, go.mod is made here (every module of the
    # manifest at its version, then tidy -e: tests of dependencies are never
    # built), and the builder compiles.
    local builder=("$DIR/builder-bin/builder" --config "$DIR/build-manifest.yaml") mods
    mods=$(sed -n 's/^[[:space:]]*-\{0,1\}[[:space:]]*gomod:[[:space:]]*\([^[:space:]]*\)[[:space:]]\{1,\}\(v[^[:space:]]*\).*$/\1@\2/p' "$MANIFEST")
    [[ -n $mods ]] || die "no gomod entries in $MANIFEST"
    (
        cd "$DIR"
        step "$logf" "generating the collector $VERSION sources" "${builder[@]}" --skip-get-modules --skip-compilation
        cd build
        step "$logf" "creating its go.mod" go mod init otelcol-logs-distributor
        # shellcheck disable=SC2086 # one module@version per word
        step "$logf" "fetching $(wc -w <<<"$mods") collector modules (go get)" go get $mods
        step "$logf" "resolving their dependencies (go mod tidy -e)" go mod tidy -e
        cd ..
        step "$logf" "building the collector $VERSION (once, into $DIR; slow when cold)" \
            "${builder[@]}" --skip-generate --skip-get-modules --ldflags "-s -w"
    )
    local built=$DIR/build/otelcol-logs-distributor
    [[ -x $built ]] || die "the builder succeeded but $built is missing"
    step "$logf" "validating it with every component (fixtures/otelcol-smoke.yaml)" \
        "$built" validate --config "$(dirname "$MANIFEST")/otelcol-smoke.yaml"
    cp "$DIR/build/go.mod" "$DIR/go.mod" # the module versions it was built from
    mv -f "$built" "$BIN"
    mv -f "$DIR/build-manifest.yaml" "$DIR/manifest.yaml"
    rm -rf "$DIR/build" "$DIR/builder-bin"
    log "built $BIN in $((SECONDS - t0))s"
    exec 8>&- # the lock; the collector must not inherit it
}

if [[ -n ${LD_OTELCOL:-} ]]; then
    BIN=$LD_OTELCOL
else
    build
fi

case ${1:-} in
    "") printf '%s\n' "$BIN" ;;
    --) shift; exec "$BIN" "$@" ;;
    *) sed -n '2,16s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
