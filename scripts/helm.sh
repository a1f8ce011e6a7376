#!/usr/bin/env bash
# helm.sh: build helm once from its Go module into the cache and print its path.
#
#   scripts/helm.sh            build if missing, print the path of the helm binary
#   scripts/helm.sh -- ARGS    build if missing, then run helm ARGS
#
# helm $HELM_VERSION is built with `go install`, its built-in Kubernetes
# version (what .Capabilities.KubeVersion and `helm lint` assume without
# --kube-version) set to $K8S_VERSION, the version the tests run against.
#
# Environment:
#   LD_CACHE   cache root (default ~/.cache/logs-distributor); the binary lands in
#              $LD_CACHE/helm-$HELM_VERSION/helm, Go caches in $LD_CACHE/go-{build,mod}
#              (shared with scripts/envtest.sh)
#   LD_HELM    a helm binary to use instead (printed as is; not checked)
set -euo pipefail

HELM_VERSION=v3.21.4
K8S_VERSION=v1.36.3

LD_CACHE=${LD_CACHE:-$HOME/.cache/logs-distributor}
[[ $LD_CACHE == /* ]] || LD_CACHE=$PWD/$LD_CACHE
DIR=$LD_CACHE/helm-$HELM_VERSION
BIN=$DIR/helm

log() { printf 'helm.sh: %s\n' "$*" >&2; }
die() { printf 'helm.sh: error: %s\n' "$*" >&2; exit 1; }

build() {
    [[ -x $BIN ]] && return 0
    command -v go >/dev/null || die "go is not on PATH (needed to build helm $HELM_VERSION)"
    mkdir -p "$DIR"
    if command -v flock >/dev/null; then
        exec 8>"$DIR.lock"
        flock 8
        [[ -x $BIN ]] && { exec 8>&-; return 0; } # built meanwhile by another invocation
    fi
    export GOCACHE=$LD_CACHE/go-build GOMODCACHE=$LD_CACHE/go-mod
    export GOFLAGS=-modcacherw GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off
    local major=${K8S_VERSION#v} minor
    minor=${major#*.}; minor=${minor%%.*}; major=${major%%.*}
    local ldflags="-s -w"
    ldflags+=" -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major"
    ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
    ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major"
    ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
    local tmp=$DIR/.gobin logf=$DIR/build.log t0=$SECONDS
    rm -rf "$tmp"
    log "building helm $HELM_VERSION (Kubernetes $major.$minor built in; once, into $DIR)"
    if ! GOBIN=$tmp go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >"$logf" 2>&1; then
        printf 'helm.sh: error: go install failed; its last output (full log: %s):\n' "$logf" >&2
        tail -n 30 "$logf" >&2
        exit 1
    fi
    [[ -x $tmp/helm ]] || die "go install succeeded but $tmp/helm is missing"
    mv -f "$tmp/helm" "$BIN"
    rm -rf "$tmp"
    log "built $BIN in $((SECONDS - t0))s"
    exec 8>&- # the lock; helm itself must not inherit it
}

if [[ -n ${LD_HELM:-} ]]; then
    BIN=$LD_HELM
else
    build
fi

case ${1:-} in
    "") printf '%s\n' "$BIN" ;;
    --) shift; exec "$BIN" "$@" ;;
    *) sed -n '2,15s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
