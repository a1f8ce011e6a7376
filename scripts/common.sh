# Shell helpers shared by the test scripts (sourced, not run). The caller
# defines `fail`, `say` and `WORK` (and `BINARY` for start_distributor)
# before using the helpers that need them.

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

# A TCP port of 127.0.0.1 that is free now (the caller binds it soon after).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Runs a command with its output in a log that is shown only if it fails.
quietly() {
    local log=$WORK/install.log
    if ! "$@" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        fail "failed: $*"
    fi
}

# Writes $WORK/config.yaml: the analyzers of scripts/fixtures/four-analyzers.yaml
# with D failing the share $1 of its deliveries (0 to 1), then the settings
# read from stdin.
write_config() {
    local d_failure_rate=$1
    {
        sed "s/failure_rate: D_FAILURE_RATE,/failure_rate: $d_failure_rate,/" \
            "$(dirname "${BASH_SOURCE[0]}")/fixtures/four-analyzers.yaml"
        cat
    } >"$WORK/config.yaml"
}

# Starts $BINARY with $WORK/config.yaml and its data in $WORK/data on a free
# loopback port, logging to $WORK/distributor.log; sets PORT and SERVER_PID
# once it listens. A port taken between choosing and binding: another one,
# up to three times.
start_distributor() {
    local attempt
    for attempt in 1 2 3; do
        PORT=$(free_port)
        "$BINARY" --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --config "$WORK/config.yaml" \
            >"$WORK/distributor.log" 2>&1 &
        SERVER_PID=$!
        for _ in $(seq 200); do
            if ! kill -0 "$SERVER_PID" 2>/dev/null; then
                wait "$SERVER_PID" 2>/dev/null || true
                SERVER_PID=
                break
            fi
            if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
                return 0
            fi
            sleep 0.1
        done
        [ -n "$SERVER_PID" ] && fail "the distributor did not listen on 127.0.0.1:$PORT within 20 s"
        say "the distributor could not start on port $PORT (attempt $attempt)"
    done
    fail "the distributor did not start"
}
