#!/usr/bin/env bash
# Two mtx-auth builds (or one build under two settings) side by side: both serve the same
# config on CPU 1, and each round loads both at once with a `wrk` each on CPU 0, so the host's
# slow and fast phases fall on both alike. Prints B's requests per second in % of A's, per
# round and the median. This resolves changes of a point or two, which `scripts/load.sh`'s
# one-after-the-other rounds cannot on a shared VM (BENCHMARKS.md, issue 16).
#
#   scripts/compare-builds.sh OLD_BINARY NEW_BINARY
#
# Environment (all optional):
#   ROUNDS=7  DURATION=3s  CONNECTIONS=16  USERS=100000   as in scripts/load.sh
#   BODY=plain            or argon2 (a cached argon2 user); CLOSE=1 sends `Connection: close`
#   LOG_A=info LOG_B=info RUST_LOG of each side (LOG_B=warn: what the decision line costs)
#   EXTRA_B=''            TOML put before B's config, e.g. $'[server]\nmax_failures_per_ip = 0\n'
#                         (what the limiter costs)
#   A_PORT=19010 B_PORT=19011
#   PIN=1                 0: do not use taskset
#   KEEP=1                keep the temp dir (configs, logs, wrk output)
# A run against itself (`scripts/compare-builds.sh X X`) shows the setup's own bias; on the VM
# of BENCHMARKS.md it was within a point of 100.
set -euo pipefail

A_BIN="${1:?usage: compare-builds.sh OLD_BINARY NEW_BINARY}"
B_BIN="${2:?usage: compare-builds.sh OLD_BINARY NEW_BINARY}"
ROUNDS="${ROUNDS:-7}"
DURATION="${DURATION:-3s}"
CONNECTIONS="${CONNECTIONS:-16}"
USERS="${USERS:-100000}"
BODY="${BODY:-plain}"
A_PORT="${A_PORT:-19010}"
B_PORT="${B_PORT:-19011}"

command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
# shellcheck source=scripts/load-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/load-common.sh"
pin_load
start_work mtx-auth-compare

# The users of scripts/load.sh.
load_users "$USERS" >"$WORK/users.toml"
cp "$WORK/users.toml" "$WORK/a.toml"
{
    printf '%s' "${EXTRA_B:-}"
    cat "$WORK/users.toml"
} >"$WORK/b.toml"

case "$BODY" in
plain) user=viewer pass=viewpass ;;
argon2) user=argonuser pass=testpass ;;
*) echo "BODY is plain or argon2" >&2 && exit 2 ;;
esac
body='{"ip":"10.0.0.1","user":"'$user'","password":"'$pass'","token":"'$pass'","action":"read","path":"cam/1","protocol":"rtsp","id":null,"query":""}'
{
    echo 'wrk.method = "POST"'
    echo "wrk.body = [[$body]]"
    echo 'wrk.headers["Content-Type"] = "application/json"'
    [[ "${CLOSE:-0}" != 1 ]] || echo 'wrk.headers["Connection"] = "close"'
} >"$WORK/load.lua"

start() { # binary config port RUST_LOG log
    RUST_LOG="$4" "${SERVER_PIN[@]}" "$1" serve --config "$2" --listen "127.0.0.1:$3" 2>"$5" &
    PIDS+=("$!")
    local i
    for i in $(seq 1 200); do
        if curl -fs -H 'Content-Type: application/json' --data "$body" -o /dev/null \
            "http://127.0.0.1:$3/auth"; then
            return 0
        fi
        sleep 0.1
    done
    echo "$1 did not answer on port $3; log:" >&2
    cat "$5" >&2
    exit 1
}
start "$A_BIN" "$WORK/a.toml" "$A_PORT" "${LOG_A:-info}" "$WORK/a.log"
start "$B_BIN" "$WORK/b.toml" "$B_PORT" "${LOG_B:-info}" "$WORK/b.log"

ratios=()
for ((i = 1; i <= ROUNDS; i++)); do
    "${WRK_PIN[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s "$WORK/load.lua" \
        "http://127.0.0.1:$A_PORT/auth" >"$WORK/a.txt" &
    on_a=$!
    "${WRK_PIN[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s "$WORK/load.lua" \
        "http://127.0.0.1:$B_PORT/auth" >"$WORK/b.txt" &
    wait "$on_a" "$!"
    if grep -q 'Non-2xx' "$WORK/a.txt" "$WORK/b.txt"; then
        echo "non-2xx answers:" >&2
        cat "$WORK/a.txt" "$WORK/b.txt" >&2
        exit 1
    fi
    a="$(rps "$WORK/a.txt")"
    b="$(rps "$WORK/b.txt")"
    ratios+=("$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", 100 * b / a }')")
    echo "round $i: A $a r/s, B $b r/s, B/A ${ratios[-1]} %"
done
echo "B/A, median of $ROUNDS rounds: $(printf '%s\n' "${ratios[@]}" | sort -n |
    awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }') %"
