#!/usr/bin/env bash
# Memory and start-up of `mtx-auth serve` with many [[users]] (issue 16, part 7).
#
# Two generated configs of USERS users, one permission each:
#   plain   user = "user{i}", pass = "pass{i}", { action = "read", path = "cam{i}" }
#   regex   the same with path = "~^cam{i % 97}/": 97 distinct patterns, each shared by
#           USERS/97 users
# For each, the release binary is started on 127.0.0.1:PORT and the script reports:
#   accept_s     seconds from exec until the port accepts a TCP connection
#   ready_s      seconds from exec until GET /readyz answers 200
#   cpu_s        CPU seconds (user + system) the server had used by then: unlike the wall-clock
#                times, it hardly moves when other processes compete for the CPU
#   rss_mib      VmRSS once ready (after SETTLE_S seconds, so the allocator has settled)
#   start_hwm    VmHWM then: the peak of the start, parse included
#   reload_hwm   the peak during one reload: VmHWM is reset first (`echo 5 > clear_refs`), then
#                SIGHUP, then read once config_generation has gone up. Where clear_refs cannot be
#                written, the highest VmRSS sampled every few milliseconds is shown instead
#                (marked ~): sampling can miss a short peak.
#   reload_s     seconds from SIGHUP until config_generation went up
#   after_mib    VmRSS once the reload is done and SETTLE_S seconds have passed
# A reload re-reads the file whatever its stamp, so the file is not touched: touching it would make
# the file watcher reload a second time two seconds later, in the middle of the next reading.
#
# Environment (all optional):
#   USERS=100000   users per config
#   PORT=19180     the port each server listens on, one at a time; it must be free
#   ROUNDS=1       runs per config; every run is printed
#   SETTLE_S=1     seconds to wait before reading VmRSS
#   CONFIGS="plain regex"
#   NO_BUILD=1     skip `cargo build --release --bin mtx-auth`
#   MTX_AUTH_BIN   measure this binary instead (implies nothing about building: set NO_BUILD=1)
#   KEEP=1         keep the temp dir (configs, logs)
#   CARGO_TARGET_DIR  honoured as cargo does (default: ./target)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

USERS="${USERS:-100000}"
PORT="${PORT:-19180}"
ROUNDS="${ROUNDS:-1}"
SETTLE_S="${SETTLE_S:-1}"
CONFIGS="${CONFIGS:-plain regex}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${MTX_AUTH_BIN:-$TARGET_DIR/release/mtx-auth}"

if [[ "${NO_BUILD:-0}" != 1 ]]; then
    cargo build --release --locked --bin mtx-auth
fi
[[ -x "$BIN" ]] || { echo "users-memory.sh: no binary at $BIN" >&2; exit 1; }
command -v curl >/dev/null || { echo "users-memory.sh: curl is needed" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mtx-auth-mem.XXXXXX")"
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ "${KEEP:-0}" == 1 ]]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the configs ---------------------------------------------------------------------------------
awk -v n="$USERS" 'BEGIN {
    for (i = 0; i < n; i++)
        printf "[[users]]\nuser = \"user%d\"\npass = \"pass%d\"\npermissions = [{ action = \"read\", path = \"cam%d\" }]\n\n", i, i, i
}' >"$WORK/plain.toml"
awk -v n="$USERS" 'BEGIN {
    for (i = 0; i < n; i++)
        printf "[[users]]\nuser = \"user%d\"\npass = \"pass%d\"\npermissions = [{ action = \"read\", path = \"~^cam%d/\" }]\n\n", i, i, i % 97
}' >"$WORK/regex.toml"

now_ns() { date +%s%N; }
secs_since() { awk -v a="$1" -v b="$(now_ns)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }
cpu_s() {
    # utime and stime, fields 14 and 15 of /proc/PID/stat, in clock ticks; the name in field 2
    # has no spaces here.
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"
}
kib() { awk -v k="$2" '$1 == k ":" { print $2 }' "/proc/$1/status"; }
mib() { awk -v k="${1:-0}" 'BEGIN { printf "%.0f", k / 1024 }'; }
generation() {
    curl -fsS "http://127.0.0.1:$PORT/metrics" 2>/dev/null |
        awk '/^[a-z_]*config_generation / { print $2 }'
}

# Ends the run when the server under test is gone (so that nothing else answers in its place).
alive() {
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "users-memory.sh: the server exited; its log:" >&2
        cat "$1" >&2
        exit 1
    fi
}

# One run of one config: prints a table row.
run() {
    local name="$1" config="$WORK/$1.toml" log="$WORK/$1.log"
    local start accept="" ready="" cpu rss hwm reload_hwm reload_s after gen0 mark=""
    # Another server on the port would answer in place of this one.
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        echo "users-memory.sh: something already listens on 127.0.0.1:$PORT; set PORT" >&2
        exit 1
    fi
    start="$(now_ns)"
    RUST_LOG=warn "$BIN" serve --config "$config" --listen "127.0.0.1:$PORT" 2>"$log" &
    SERVER_PID=$!
    while kill -0 "$SERVER_PID" 2>/dev/null; do
        if [[ -z "$accept" ]] && (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            accept="$(secs_since "$start")"
        fi
        if [[ -n "$accept" ]] && curl -fsS -o /dev/null "http://127.0.0.1:$PORT/readyz" 2>/dev/null; then
            ready="$(secs_since "$start")"
            cpu="$(cpu_s "$SERVER_PID")"
            break
        fi
        sleep 0.01
    done
    [[ -n "$ready" ]] || alive "$log"
    sleep "$SETTLE_S"
    rss="$(kib "$SERVER_PID" VmRSS)"
    hwm="$(kib "$SERVER_PID" VmHWM)"

    gen0="$(generation)"
    local sampled=0
    if ! (echo 5 >"/proc/$SERVER_PID/clear_refs") 2>/dev/null; then
        mark="~"
    fi
    start="$(now_ns)"
    kill -HUP "$SERVER_PID"
    while [[ "$(generation)" == "$gen0" ]]; do
        alive "$log"
        if [[ -n "$mark" ]]; then
            local r
            r="$(kib "$SERVER_PID" VmRSS)"
            ((r > sampled)) && sampled="$r"
        fi
        sleep 0.005
    done
    reload_s="$(secs_since "$start")"
    if [[ -n "$mark" ]]; then
        reload_hwm="$sampled"
    else
        reload_hwm="$(kib "$SERVER_PID" VmHWM)"
    fi
    sleep "$SETTLE_S"
    after="$(kib "$SERVER_PID" VmRSS)"

    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    printf '%-6s %8s %8s %6s %8s %10s %11s %9s %10s\n' "$name" "$accept" "$ready" "$cpu" \
        "$(mib "$rss")" "$(mib "$hwm")" "$mark$(mib "$reload_hwm")" "$reload_s" "$(mib "$after")"
}

echo "users=$USERS binary=$BIN"
printf '%-6s %8s %8s %6s %8s %10s %11s %9s %10s\n' config accept_s ready_s cpu_s rss_mib \
    start_hwm reload_hwm reload_s after_mib
for _ in $(seq 1 "$ROUNDS"); do
    for c in $CONFIGS; do
        run "$c"
    done
done
