# Shell helpers shared by the test scripts (sourced, not run). The caller
# defines `fail` and `WORK` before using them.

# Stops a process we started: TERM, up to 5 s to exit, then KILL.
stop_pid() {
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Runs a command with its output in a log that is shown only if it fails.
quietly() {
    local log=$WORK/install.log
    if ! "$@" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        fail "failed: $*"
    fi
}
