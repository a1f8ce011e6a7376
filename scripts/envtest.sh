#!/usr/bin/env bash
# envtest.sh: a real kube-apiserver + etcd (+ kubectl) on loopback for tests,
# in the manner of controller-runtime's envtest (no kubelet, no controllers).
#
#   scripts/envtest.sh build   build the binaries into the cache (only when missing)
#   scripts/envtest.sh up      build if needed, start etcd + kube-apiserver, print the kubeconfig path
#   scripts/envtest.sh down    stop both and remove the run directory
#   scripts/envtest.sh env     print `export KUBECONFIG=...` / `export LD_KUBECTL=...` for eval
#
# Environment:
#   LD_CACHE            cache root (default ~/.cache/logs-distributor); binaries land in
#                       $LD_CACHE/k8s-$K8S_VERSION/bin, Go caches in $LD_CACHE/go-{build,mod}
#   KUBEBUILDER_ASSETS  a directory already holding kube-apiserver, etcd and kubectl: used as is
#   LD_ENVTEST_DIR      run directory (default /tmp/logs-distributor-envtest)
#   LD_ENVTEST_TIMEOUT  seconds to wait for readiness (default 60)
#
# Every command is idempotent.
set -euo pipefail

K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16

LD_CACHE=${LD_CACHE:-$HOME/.cache/logs-distributor}
RUN_DIR=${LD_ENVTEST_DIR:-/tmp/logs-distributor-envtest}
[[ $LD_CACHE == /* ]] || LD_CACHE=$PWD/$LD_CACHE
[[ $RUN_DIR == /* ]] || RUN_DIR=$PWD/$RUN_DIR
RUN_DIR=${RUN_DIR%/}
TIMEOUT=${LD_ENVTEST_TIMEOUT:-60}

BUILD_ROOT=$LD_CACHE/k8s-$K8S_VERSION
CACHE_BIN=$BUILD_ROOT/bin
CERT_DIR=$RUN_DIR/certs
KUBECONFIG_FILE=$RUN_DIR/kubeconfig
FIXTURES=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/fixtures
ADMIN_USER=envtest-admin

log() { printf 'envtest: %s\n' "$*" >&2; }
die() { printf 'envtest: error: %s\n' "$*" >&2; exit 1; }

# lock FD FILE: serialise concurrent invocations (best effort without flock).
lock() {
    command -v flock >/dev/null || return 0
    mkdir -p "$(dirname "$2")"
    eval "exec $1>\"\$2\""
    flock "$1"
}

have_bins() { # dir
    local d=$1 b
    for b in kube-apiserver etcd kubectl; do [[ -x $d/$b ]] || return 1; done
}

# Directory holding the three binaries (KUBEBUILDER_ASSETS wins when complete).
bin_dir() {
    if [[ -n ${KUBEBUILDER_ASSETS:-} ]] && have_bins "$KUBEBUILDER_ASSETS"; then
        printf '%s\n' "$KUBEBUILDER_ASSETS"
    else
        printf '%s\n' "$CACHE_BIN"
    fi
}

# ---------------------------------------------------------------- build

go_env() {
    command -v go >/dev/null || die "go is not on PATH (needed to build $K8S_VERSION binaries)"
    export GOCACHE=$LD_CACHE/go-build GOMODCACHE=$LD_CACHE/go-mod
    export GOFLAGS=-modcacherw GOTOOLCHAIN=local CGO_ENABLED=0
    export GOWORK=off
}

# run LOGFILE DESCRIPTION CMD...: quiet unless it fails; all output goes to LOGFILE.
run() {
    local logf=$1 what=$2 step rc=0; shift 2
    log "$what"
    step=$(mktemp)
    "$@" >"$step" 2>&1 || rc=$?
    { printf '\n$'; printf ' %q' "$@"; printf '\n'; cat "$step"; } >>"$logf"
    if ((rc != 0)); then
        printf 'envtest: error: %s failed (exit %d); its last output (full log: %s):\n' "$what" "$rc" "$logf" >&2
        tail -n 40 "$step" >&2
        rm -f "$step"
        exit 1
    fi
    rm -f "$step"
}

build_k8s() {
    local src=$BUILD_ROOT/src/kubernetes logf=$BUILD_ROOT/build.log gomod mods m
    mkdir -p "$src" "$CACHE_BIN"
    cd "$src"
    if [[ ! -f .resolved ]]; then
        run "$logf" "fetching k8s.io/kubernetes@$K8S_VERSION" \
            go mod download -json "k8s.io/kubernetes@$K8S_VERSION"
        gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
            sed -n 's/^[[:space:]]*"GoMod":[[:space:]]*"\(.*\)",\{0,1\}$/\1/p')
        [[ -f $gomod ]] || die "could not locate go.mod of k8s.io/kubernetes@$K8S_VERSION"
        # Staging modules are required as v0.0.0 with replaces local to the
        # kubernetes repo; pin each to its published v0.X.Y tag.
        mods=$(awk '$1 ~ /^k8s\.io\/[A-Za-z0-9._-]+$/ && $2 == "v0.0.0" { print $1 }' "$gomod" | sort -u)
        [[ -n $mods ]] || die "no k8s.io/* v0.0.0 requirements found in $gomod"
        local staging=v0.${K8S_VERSION#v1.}
        rm -f go.mod go.sum
        run "$logf" "creating scratch module ($(wc -w <<<"$mods") staging modules at $staging)" \
            go mod init envtest.local/kubernetes
        local args=()
        for m in $mods; do args+=("-replace=$m=$m@$staging"); done
        run "$logf" "adding replaces" go mod edit "${args[@]}"
        run "$logf" "resolving kube-apiserver and kubectl (go get)" \
            go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" "k8s.io/kubernetes/cmd/kubectl@$K8S_VERSION"
        : >.resolved
    fi
    local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
    local cmd
    for cmd in kube-apiserver kubectl; do
        [[ -x $CACHE_BIN/$cmd ]] && continue
        local t0=$SECONDS
        run "$logf" "building $cmd $K8S_VERSION (slow when cold)" \
            go build -trimpath -ldflags "$ldflags" -o "$CACHE_BIN/.$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
        mv -f "$CACHE_BIN/.$cmd.tmp" "$CACHE_BIN/$cmd"
        log "built $cmd in $((SECONDS - t0))s"
    done
}

build_etcd() {
    local src=$BUILD_ROOT/src/etcd logf=$BUILD_ROOT/build.log
    [[ -x $CACHE_BIN/etcd ]] && return 0
    mkdir -p "$src" "$CACHE_BIN"
    cd "$src"
    if [[ ! -f .resolved ]]; then
        rm -f go.mod go.sum
        run "$logf" "creating etcd wrapper module" go mod init envtest.local/etcd
        # `go install` refuses modules with replace directives; a wrapper
        # module that requires the server module builds its root package.
        run "$logf" "resolving go.etcd.io/etcd/server/v3@$ETCD_VERSION (go get)" \
            go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
        : >.resolved
    fi
    local t0=$SECONDS
    run "$logf" "building etcd $ETCD_VERSION" \
        go build -trimpath -ldflags "-s -w" -o "$CACHE_BIN/.etcd.tmp" go.etcd.io/etcd/server/v3
    mv -f "$CACHE_BIN/.etcd.tmp" "$CACHE_BIN/etcd"
    log "built etcd in $((SECONDS - t0))s"
}

cmd_build() {
    if [[ -n ${KUBEBUILDER_ASSETS:-} ]]; then
        if have_bins "$KUBEBUILDER_ASSETS"; then
            log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
            return 0
        fi
        log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks kube-apiserver/etcd/kubectl; using the cache"
    fi
    have_bins "$CACHE_BIN" && return 0
    lock 8 "$BUILD_ROOT.lock"
    have_bins "$CACHE_BIN" && return 0 # built meanwhile by another invocation
    go_env
    local t0=$SECONDS
    mkdir -p "$BUILD_ROOT"
    : >"$BUILD_ROOT/build.log"
    (build_etcd)
    (build_k8s)
    have_bins "$CACHE_BIN" || die "build finished but binaries are missing in $CACHE_BIN"
    log "binaries ready in $CACHE_BIN ($((SECONDS - t0))s)"
}

# ---------------------------------------------------------------- up / down

MARKER=$RUN_DIR/.logs-distributor-envtest

# True when something holds TCP port $1 on this host (any state, v4 or v6).
port_in_use() {
    local hex
    hex=$(printf ':%04X' "$1")
    awk -v p="$hex" 'NR > 1 && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null && return 0
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Print a free loopback port below the kernel's ephemeral range, not in "$@".
free_port() {
    local p i taken
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 12000))
        taken=0
        for q in "$@"; do [[ $p == "$q" ]] && taken=1; done
        ((taken)) && continue
        port_in_use "$p" || { printf '%s\n' "$p"; return 0; }
    done
    die "could not find a free port on 127.0.0.1"
}

# pid_alive NAME: the pid recorded in $RUN_DIR/NAME.pid runs binary NAME.
pid_alive() {
    local f=$RUN_DIR/$1.pid pid
    [[ -f $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' '\n' <"/proc/$pid/cmdline" | head -n 1 | grep -q "/$1\$"
}

stop_proc() { # NAME
    pid_alive "$1" || { rm -f "$RUN_DIR/$1.pid"; return 0; }
    local pid i
    pid=$(<"$RUN_DIR/$1.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        pid_alive "$1" || break
        sleep 0.1
    done
    if pid_alive "$1"; then
        log "$1 (pid $pid) ignored SIGTERM; killing"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$RUN_DIR/$1.pid"
}

cmd_down() {
    if [[ ! -d $RUN_DIR ]]; then
        log "not running (no $RUN_DIR)"
        return 0
    fi
    [[ -f $MARKER ]] || die "$RUN_DIR exists but was not created by envtest.sh; refusing to touch it"
    stop_proc kube-apiserver
    stop_proc etcd
    rm -rf -- "$RUN_DIR"
    log "stopped; removed $RUN_DIR"
}

# curl against the apiserver with the admin token and the serving CA.
api_curl() { # PATH
    curl -sS --max-time 5 --cacert "$CERT_DIR/apiserver.crt" \
        -H "Authorization: Bearer $(<"$RUN_DIR/admin.token")" \
        "https://127.0.0.1:$(<"$RUN_DIR/apiserver.port")$1"
}

is_up() {
    [[ -f $MARKER && -f $KUBECONFIG_FILE && -f $RUN_DIR/apiserver.port ]] || return 1
    pid_alive etcd && pid_alive kube-apiserver || return 1
    [[ $(api_curl /readyz 2>/dev/null) == ok ]]
}

# Start NAME with ARGS detached from this shell; log to $RUN_DIR/NAME.log.
spawn() {
    local name=$1; shift
    printf '%q ' "$@" >"$RUN_DIR/$name.cmd"
    # setsid may fork; the process that execs the binary records its own pid.
    # fds 8/9 are our flock locks: the daemons must not inherit them.
    rm -f "$RUN_DIR/$name.pid"
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$RUN_DIR/$name.pid" "$@" \
        </dev/null >"$RUN_DIR/$name.log" 2>&1 8>&- 9>&- &
    local i
    for ((i = 0; i < 50; i++)); do
        pid_alive "$name" && return 0
        sleep 0.1
    done
    fail_with_log "$name" "$name did not start"
}

fail_with_log() { # NAME MESSAGE
    log "$2; last lines of $RUN_DIR/$1.log:"
    tail -n 25 "$RUN_DIR/$1.log" >&2 || true
    log "leaving $RUN_DIR for inspection; run '$0 down' to clean up"
    stop_proc kube-apiserver
    stop_proc etcd
    exit 1
}

write_kubeconfig() { # PORT TOKEN
    local ca
    ca=$(base64 -w0 <"$CERT_DIR/apiserver.crt")
    umask 077
    cat >"$KUBECONFIG_FILE.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster:
    server: https://127.0.0.1:$1
    certificate-authority-data: $ca
users:
- name: $ADMIN_USER
  user:
    token: $2
contexts:
- name: envtest
  context:
    cluster: envtest
    user: $ADMIN_USER
    namespace: default
current-context: envtest
EOF
    mv -f "$KUBECONFIG_FILE.tmp" "$KUBECONFIG_FILE"
}

# Exercise the API the way the operator will: discovery, then a CRD round trip.
smoke_test() {
    local kubectl out crd=envtestprobes.probe.logs-distributor.test # the CRD of fixtures/probe-crd.yaml
    kubectl=$(bin_dir)/kubectl
    k() { "$kubectl" --kubeconfig "$KUBECONFIG_FILE" --request-timeout=20s "$@"; }
    out=$(k get --raw /version 2>&1) || { log "$out"; return 1; }
    grep -q '"gitVersion"' <<<"$out" || { log "unexpected /version: $out"; return 1; }
    out=$(k api-resources 2>&1) || { log "$out"; return 1; }
    grep -q '^customresourcedefinitions ' <<<"$out" || { log "api-resources lacks CRDs: $(head -n 5 <<<"$out")"; return 1; }
    out=$(k apply -f "$FIXTURES/probe-crd.yaml" 2>&1) || { log "CRD apply failed: $out"; return 1; }
    out=$(k wait --for=condition=Established --timeout=20s "crd/$crd" 2>&1) ||
        { log "CRD not established: $out"; return 1; }
    out=$(k get crd "$crd" -o name 2>&1) || { log "CRD get failed: $out"; return 1; }
    out=$(k delete -f "$FIXTURES/probe-crd.yaml" --wait=true 2>&1) || { log "CRD delete failed: $out"; return 1; }
}

cmd_up() {
    local t0=$SECONDS
    if is_up; then
        log "already up"
        printf '%s\n' "$KUBECONFIG_FILE"
        return 0
    fi
    if [[ -d $RUN_DIR ]]; then
        log "cleaning up a stale run in $RUN_DIR"
        cmd_down
    fi
    cmd_build
    local bin; bin=$(bin_dir)
    command -v openssl >/dev/null || die "openssl is required (service-account key pair)"
    command -v curl >/dev/null || die "curl is required (readiness polling)"

    mkdir -p "$RUN_DIR"
    : >"$MARKER"
    mkdir -p "$CERT_DIR" "$RUN_DIR/etcd-data"
    chmod 700 "$RUN_DIR" "$CERT_DIR" "$RUN_DIR/etcd-data"

    local etcd_port peer_port api_port
    etcd_port=$(free_port)
    peer_port=$(free_port "$etcd_port")
    api_port=$(free_port "$etcd_port" "$peer_port")
    echo "$etcd_port" >"$RUN_DIR/etcd.port"
    echo "$api_port" >"$RUN_DIR/apiserver.port"

    # Service-account token signing key pair.
    openssl genrsa -out "$CERT_DIR/sa.key" 2048 2>/dev/null || die "openssl genrsa failed"
    openssl rsa -in "$CERT_DIR/sa.key" -pubout -out "$CERT_DIR/sa.pub" 2>/dev/null || die "openssl rsa -pubout failed"
    # Static admin token, in system:masters (bypasses RBAC).
    local token
    token=$(openssl rand -hex 32)
    (umask 077; printf '%s\n' "$token" >"$RUN_DIR/admin.token")
    (umask 077; printf '%s,%s,%s,"%s"\n' "$token" "$ADMIN_USER" "$ADMIN_USER" "system:masters" >"$CERT_DIR/tokens.csv")

    local etcd_url=http://127.0.0.1:$etcd_port peer_url=http://127.0.0.1:$peer_port
    spawn etcd "$bin/etcd" \
        --name=envtest \
        --data-dir="$RUN_DIR/etcd-data" \
        --listen-client-urls="$etcd_url" \
        --advertise-client-urls="$etcd_url" \
        --listen-peer-urls="$peer_url" \
        --initial-advertise-peer-urls="$peer_url" \
        --initial-cluster="envtest=$peer_url" \
        --unsafe-no-fsync=true \
        --log-level=warn
    local deadline=$((SECONDS + TIMEOUT))
    until [[ $(curl -s --max-time 2 "$etcd_url/health" 2>/dev/null) == *'"health":"true"'* ]]; do
        pid_alive etcd || fail_with_log etcd "etcd exited during startup"
        ((SECONDS < deadline)) || fail_with_log etcd "etcd not healthy after ${TIMEOUT}s"
        sleep 0.2
    done

    spawn kube-apiserver "$bin/kube-apiserver" \
        --etcd-servers="$etcd_url" \
        --cert-dir="$CERT_DIR" \
        --secure-port="$api_port" \
        --bind-address=127.0.0.1 \
        --advertise-address=127.0.0.1 \
        --service-cluster-ip-range=10.0.0.0/24 \
        --authorization-mode=RBAC \
        --token-auth-file="$CERT_DIR/tokens.csv" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$CERT_DIR/sa.pub" \
        --service-account-signing-key-file="$CERT_DIR/sa.key" \
        --disable-admission-plugins=ServiceAccount \
        --allow-privileged=true
    until [[ -s $CERT_DIR/apiserver.crt ]] && [[ $(api_curl /readyz 2>/dev/null) == ok ]]; do
        pid_alive kube-apiserver || fail_with_log kube-apiserver "kube-apiserver exited during startup"
        ((SECONDS < deadline)) || fail_with_log kube-apiserver "kube-apiserver not ready after ${TIMEOUT}s ($(api_curl '/readyz?verbose' 2>&1 | grep -v '\[+\]' | head -n 5 | tr '\n' ' '))"
        sleep 0.25
    done
    local t_ready=$((SECONDS - t0))
    write_kubeconfig "$api_port" "$token"
    smoke_test || fail_with_log kube-apiserver "smoke test against the apiserver failed"
    log "up in $((SECONDS - t0))s (ready after ${t_ready}s, then discovery + CRD smoke test): etcd $etcd_url, kube-apiserver https://127.0.0.1:$api_port (logs and pids in $RUN_DIR)"
    printf '%s\n' "$KUBECONFIG_FILE"
}

cmd_env() {
    is_up || log "warning: control plane is not up (run '$0 up')"
    printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_FILE"
    printf 'export LD_KUBECTL=%q\n' "$(bin_dir)/kubectl"
}

# ---------------------------------------------------------------- main

usage() {
    sed -n '2,17s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

case ${1:-} in
    build) cmd_build ;;
    up) lock 9 "$RUN_DIR.lock"; cmd_up ;;
    down) lock 9 "$RUN_DIR.lock"; cmd_down ;;
    env) cmd_env ;;
    *) usage ;;
esac
