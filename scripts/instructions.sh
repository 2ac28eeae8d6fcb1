#!/usr/bin/env bash
# User-space instructions per keep-alive `/auth` request, `mtx-auth serve` against the bare
# responder (examples/bare.rs), counted by callgrind (issue 16, part 6). Unlike req/s on a shared
# machine the count is exact and repeatable, but it is blind to the kernel (syscalls, the socket).
#
# Each server runs under `valgrind --tool=callgrind --instr-atstart=no` with USERS [[users]]
# (the benched user `viewer` last, as in scripts/load.sh); after a warm-up, instrumentation is
# switched on for `wrk -t1 -c4 -d6s` POSTing the plain user's body, then the count is divided by
# the requests wrk saw answered. mtx-auth runs at RUST_LOG=info, its decision line going to a file.
#
# Environment (all optional):
#   USERS=100000  NO_BUILD=1  PORT=19100
#   KEEP=1        keep the temp dir (callgrind files: callgrind_annotate --inclusive=yes FILE)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

USERS="${USERS:-100000}"
PORT="${PORT:-19100}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if [[ "${NO_BUILD:-0}" != 1 ]]; then
    cargo build --release --bin mtx-auth --example bare
fi
for tool in valgrind callgrind_control wrk curl; do
    command -v "$tool" >/dev/null || (apt-get update && apt-get install -y valgrind wrk curl)
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mtx-auth-instructions.XXXXXX")"
SERVER=
cleanup() {
    [[ -n "$SERVER" ]] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
    if [[ "${KEEP:-0}" == 1 ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

awk -v n="$((USERS > 1 ? USERS - 1 : 0))" 'BEGIN {
    for (i = 0; i < n; i++)
        printf "[[users]]\nuser = \"user%d\"\npass = \"pass%d\"\npermissions = [{ action = \"read\", path = \"cam/%d\" }]\n\n", i, i, i
}' >"$WORK/users.toml"
printf '[[users]]\nuser = "viewer"\npass = "viewpass"\npermissions = [{ action = "read" }]\n' \
    >>"$WORK/users.toml"
cat >"$WORK/plain.lua" <<'EOF'
wrk.method = "POST"
wrk.body = [[{"ip":"10.0.0.1","user":"viewer","password":"viewpass","token":"viewpass","action":"read","path":"cam/1","protocol":"rtsp","id":null,"query":""}]]
wrk.headers["Content-Type"] = "application/json"
EOF

count() { # name, then the server's command line
    local name=$1
    shift
    RUST_LOG=info valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$WORK/$name.%p" "$@" 2>"$WORK/$name.log" &
    SERVER=$!
    local i
    for i in $(seq 1 600); do
        curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null && break
        sleep 0.5
    done
    wrk -t1 -c4 -d3s -s "$WORK/plain.lua" "http://127.0.0.1:$PORT/auth" >/dev/null
    callgrind_control -z "$SERVER" >/dev/null 2>&1
    callgrind_control -i on "$SERVER" >/dev/null 2>&1
    wrk -t1 -c4 -d6s -s "$WORK/plain.lua" "http://127.0.0.1:$PORT/auth" >"$WORK/$name.wrk"
    callgrind_control -i off "$SERVER" >/dev/null 2>&1
    callgrind_control -d "$SERVER" >/dev/null 2>&1
    kill "$SERVER"
    wait "$SERVER" 2>/dev/null || true
    SERVER=
    if grep -q 'Non-2xx' "$WORK/$name.wrk"; then
        echo "$name answered something other than 2xx:" >&2
        cat "$WORK/$name.wrk" >&2
        exit 1
    fi
    local requests total file
    requests=$(grep -o '[0-9]* requests in' "$WORK/$name.wrk" | cut -d' ' -f1)
    file=$(ls -S "$WORK/$name".* | grep -v '\.log$\|\.wrk$' | head -1)
    total=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ && !n++ {
        gsub(",", "", $1); print $1 }')
    printf '%-8s %9d requests %14d instructions %7d per request\n' \
        "$name" "$requests" "$total" "$((total / requests))"
}

count bare "$TARGET_DIR/release/examples/bare" "127.0.0.1:$PORT"
count mtx-auth "$TARGET_DIR/release/mtx-auth" serve --config "$WORK/users.toml" \
    --listen "127.0.0.1:$PORT"
