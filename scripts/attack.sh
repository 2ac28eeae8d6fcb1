#!/usr/bin/env bash
# Password spray against an argon2 user while a legitimate viewer with a cached credential keeps
# requesting: the viewer's latency with and without the attack.
#
#   viewer    wrk -t1 -c4, POSTing argonuser/testpass (verified once with curl, then cached)
#   attacker  wrk -t1 -c32, each request a random password from a random 10.x.y.z address
#             (so the per-address failure limit never trips: the worst case for argon2 load)
#
# mtx-auth runs with its defaults (argon2_concurrency = CPUs, argon2_queue = 64) on all CPUs,
# RUST_LOG=warn (the spray would otherwise write a decision line per request). Prints the
# viewer's p50/p90/p99 and req/s alone and under attack, and what the attacker got.
#
# Environment: DURATION=10s  MTX_PORT=19010  NO_BUILD=1  KEEP=1  CARGO_TARGET_DIR
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-10s}"
MTX_PORT="${MTX_PORT:-19010}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
MTX_BIN="$TARGET_DIR/release/mtx-auth"
# shellcheck disable=SC2016 # a literal PHC string
ARGON2_TESTPASS='argon2:$argon2i$v=19$m=4096,t=3,p=1$MTIzNDU2Nzg$/mrZ42TiTv1mcPnpMUera5oi0SFYbbyueAbdx5sUvWo'
VIEWER_BODY='{"ip":"192.168.1.20","user":"argonuser","password":"testpass","token":"testpass","action":"read","path":"cam/1","protocol":"hls","id":null,"query":""}'

[[ "${NO_BUILD:-0}" == 1 ]] || cargo build --release --bin mtx-auth
command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mtx-auth-attack.XXXXXX")"
MTX_PID=
cleanup() {
    [[ -z "$MTX_PID" ]] || kill "$MTX_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    if [[ "${KEEP:-0}" == 1 ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

cat >"$WORK/attack.toml" <<TOML
[[users]]
user = "argonuser"
pass = "$ARGON2_TESTPASS"
permissions = [{ action = "read" }]
TOML

cat >"$WORK/viewer.lua" <<LUA
wrk.method = "POST"
wrk.body = [[$VIEWER_BODY]]
wrk.headers["Content-Type"] = "application/json"
LUA
cat >"$WORK/attacker.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
math.randomseed(os.time())
request = function()
    local ip = string.format("10.%d.%d.%d", math.random(0, 255), math.random(0, 255), math.random(1, 254))
    local pass = string.format("%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
    local body = string.format('{"ip":"%s","user":"argonuser","password":"%s","token":"%s","action":"read","path":"cam/1","protocol":"rtsp","id":null,"query":""}', ip, pass, pass)
    return wrk.format(nil, nil, nil, body)
end
LUA

RUST_LOG=warn "$MTX_BIN" serve --config "$WORK/attack.toml" --listen "127.0.0.1:$MTX_PORT" 2>"$WORK/mtx.log" &
MTX_PID=$!
for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$MTX_PORT/healthz" 2>/dev/null && break
    sleep 0.1
done
status="$(curl -sS -o /dev/null -w '%{http_code}' --data "$VIEWER_BODY" "http://127.0.0.1:$MTX_PORT/auth")"
[[ "$status" == 200 ]] || { echo "viewer not allowed: $status" >&2; exit 1; }

viewer() { wrk -t1 -c4 -d"$DURATION" --latency -s "$WORK/viewer.lua" "http://127.0.0.1:$MTX_PORT/auth" >"$1"; }
summary() { # file label
    awk -v label="$2" '
        /^ +50%/ { p50 = $2 } /^ +90%/ { p90 = $2 } /^ +99%/ { p99 = $2 }
        /^Requests\/sec:/ { rps = $2 } /Non-2xx/ { non2xx = $NF }
        END { printf "%-26s p50 %-9s p90 %-9s p99 %-9s %10.0f req/s  non-2xx %s\n", label, p50, p90, p99, rps, (non2xx == "" ? 0 : non2xx) }' "$1"
}

echo "mtx-auth $("$MTX_BIN" --version | awk '{print $2}'), $(nproc) CPUs, wrk -d$DURATION; defaults (argon2_concurrency = CPUs, argon2_queue = 64)"
viewer "$WORK/alone.txt"
summary "$WORK/alone.txt" "viewer alone"
wrk -t1 -c32 -d"$DURATION" --latency -s "$WORK/attacker.lua" "http://127.0.0.1:$MTX_PORT/auth" >"$WORK/attacker.txt" &
ATTACK=$!
sleep 1
viewer "$WORK/attacked.txt"
wait "$ATTACK"
summary "$WORK/attacked.txt" "viewer under attack"
summary "$WORK/attacker.txt" "attacker (all denied)"
grep -q 'Non-2xx' "$WORK/alone.txt" "$WORK/attacked.txt" && { echo "the viewer was denied" >&2; exit 1; }
echo "denials by reason, from /metrics:"
curl -fsS "http://127.0.0.1:$MTX_PORT/metrics" | grep '^mtx_auth_denials_total' | sed 's/^/  /'
cat <<'NOTE'
p50/p90/p99 are wrk's latency percentiles for the viewer's requests; the target is a viewer p99
under 5 ms while the attack runs.
NOTE
