#!/usr/bin/env bash
# HTTP load test: `mtx-auth serve` against the bare actix responder (examples/bare.rs), which
# reads and parses the same body but decides nothing and logs nothing: the throughput ceiling.
#
# Scenarios (each against both servers, back to back):
#   plain/keep-alive     viewer/viewpass, one connection reused for many requests
#   plain/close          the same with `Connection: close` on every request, as MediaMTX does
#   argon2-cached/...    an argon2 user whose verification was primed once with curl
#   jwt-cached/...       an EdDSA JWT (examples/jwt_fixture.rs) verified against a JWKS served
#                        on loopback by python3 -m http.server, primed once with curl
#   jellyfin-cached/...  a Jellyfin account (alice/alice-pw) checked against the tests' fake
#                        Jellyfin (examples/media_fixture.rs) on loopback, primed once with curl
#   plain/close -c1      MediaMTX's own pattern: one call at a time, each on a new connection
#                        (wrk -c1, `Connection: close`); its p50 is the latency MediaMTX waits
#
# mtx-auth runs with RUST_LOG=info (the default): its decision log line is part of the real
# cost, and goes to a file. With taskset and 2+ CPUs, both servers run on CPU 1 and wrk on CPU 0;
# both servers keep actix's default worker count (one per CPU they may run on: 1 when pinned).
#
# Environment (all optional):
#   DURATION=10s  WARMUP=2s  THREADS=1  CONNECTIONS=16   wrk settings per run
#   ROUNDS=1            runs per scenario and server (alternating order); the median is shown
#   USERS=10            users in the config (fillers first, the two benched users last)
#   SCENARIOS=all       or `headline`: only the rows issue 16 is judged by (plain and cached
#                       argon2, keep-alive and close, and plain/close -c1)
#   MTX_BIN, BARE_BIN   binaries to compare (default: the ones this script builds); with NO_BUILD=1
#                       this compares e.g. an older build against the bare responder
#   MTX_PORT=19000 BARE_PORT=19001 JWKS_PORT=19002
#   PIN=1               0: do not use taskset
#   WARN_RUN=1          0: skip the extra, separately labelled RUST_LOG=warn runs
#   NO_BUILD=1          skip `cargo build`
#   KEEP=1              keep the temp dir (config, logs, wrk output)
#   CARGO_TARGET_DIR    honoured as cargo does (default: ./target)
#   STORE_URL           give mtx-auth a [store] (sqlite://FILE or postgres://...): decisions must
#                       not change speed with it, since /auth never waits for the store
#   SIDE_BY_SIDE=1      load both servers at once (two wrk on CPU 0, both servers on CPU 1)
#                       instead of one after the other: each server gets about half of CPU 1
#                       for the same seconds, so the ratio is one of CPU cost per request, and
#                       the host's slow and fast phases fall on both alike. A cross-check of the
#                       headline at a fraction of its scatter; not the headline itself.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
THREADS="${THREADS:-1}"
CONNECTIONS="${CONNECTIONS:-16}"
USERS="${USERS:-10}"
MTX_PORT="${MTX_PORT:-19000}"
BARE_PORT="${BARE_PORT:-19001}"
JWKS_PORT="${JWKS_PORT:-19002}"
PIN="${PIN:-1}"
WARN_RUN="${WARN_RUN:-1}"
ROUNDS="${ROUNDS:-1}"
SCENARIOS="${SCENARIOS:-all}"
SIDE_BY_SIDE="${SIDE_BY_SIDE:-0}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
MTX_BIN="${MTX_BIN:-$TARGET_DIR/release/mtx-auth}"
BARE_BIN="${BARE_BIN:-$TARGET_DIR/release/examples/bare}"
FIXTURE_BIN="$TARGET_DIR/release/examples/jwt_fixture"
MEDIA_BIN="$TARGET_DIR/release/examples/media_fixture"

# shellcheck source=scripts/load-common.sh
source "$ROOT/scripts/load-common.sh"
PLAIN_BODY='{"ip":"10.0.0.1","user":"viewer","password":"viewpass","token":"viewpass","action":"read","path":"cam/1","protocol":"rtsp","id":null,"query":""}'
ARGON2_BODY='{"ip":"10.0.0.1","user":"argonuser","password":"testpass","token":"testpass","action":"read","path":"cam/1","protocol":"rtsp","id":null,"query":""}'
JELLYFIN_BODY='{"ip":"10.0.0.1","user":"alice","password":"alice-pw","token":"alice-pw","action":"read","path":"cam/1","protocol":"rtsp","id":null,"query":""}'

if [[ "${NO_BUILD:-0}" != 1 ]]; then
    cargo build --release --bin mtx-auth --example bare --example jwt_fixture --example media_fixture
fi
command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
command -v curl >/dev/null || (apt-get update && apt-get install -y curl)

pin_load
start_work mtx-auth-load
trap 'exit 130' INT TERM

# --- a JWKS on loopback and a token signed by its key ----------------------------------------
"$FIXTURE_BIN" "$WORK/jwks.json" >"$WORK/token"
JWT="$(cat "$WORK/token")"
JWT_BODY='{"ip":"10.0.0.1","user":"","password":"'"$JWT"'","token":"'"$JWT"'","action":"read","path":"cam/1","protocol":"rtsp","id":null,"query":""}'
python3 -m http.server "$JWKS_PORT" --bind 127.0.0.1 --directory "$WORK" >"$WORK/jwks-server.log" 2>&1 &
PIDS+=("$!")

# --- a fake Jellyfin on loopback ---------------------------------------------------------------
"$MEDIA_BIN" >"$WORK/jellyfin.url" 2>"$WORK/jellyfin.log" &
PIDS+=("$!")
for _ in $(seq 1 100); do
    [[ -s "$WORK/jellyfin.url" ]] && break
    sleep 0.1
done
JELLYFIN_URL="$(head -n1 "$WORK/jellyfin.url")"

# --- config: fillers, then the two users the load hits, last in config order -----------------
CONFIG="$WORK/load.toml"
load_users "$USERS" >"$CONFIG"
cat >>"$CONFIG" <<EOF

[jwt]
jwks_url = "http://127.0.0.1:$JWKS_PORT/jwks.json"
issuer = "mtx-auth-load"

[jellyfin]
url = "$JELLYFIN_URL"
EOF
if [[ -n "${STORE_URL:-}" ]]; then
    printf '\n[store]\nurl = "%s"\n' "$STORE_URL" >>"$CONFIG"
fi

for f in plain argon2 jwt jellyfin; do
    body_var="${f^^}_BODY"
    for mode in keepalive close; do
        {
            echo 'wrk.method = "POST"'
            echo "wrk.body = [[${!body_var}]]"
            echo 'wrk.headers["Content-Type"] = "application/json"'
            [[ "$mode" == close ]] && echo 'wrk.headers["Connection"] = "close"'
        } >"$WORK/$f-$mode.lua"
    done
done

# --- servers ----------------------------------------------------------------------------------
wait_healthy() { # port name
    local i
    for i in $(seq 1 200); do
        if curl -fsS "http://127.0.0.1:$1/healthz" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "$2 did not become healthy on port $1; log:" >&2
    cat "$WORK/$2.log" >&2 || true
    exit 1
}

for port in "$MTX_PORT" "$BARE_PORT"; do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; then
        echo "something already answers on port $port; set MTX_PORT/BARE_PORT" >&2
        exit 1
    fi
done

MTX_PID=
start_mtx() { # RUST_LOG value; log file name
    RUST_LOG="$1" "${SERVER_PIN[@]}" "$MTX_BIN" serve --config "$CONFIG" \
        --listen "127.0.0.1:$MTX_PORT" 2>"$WORK/$2.log" &
    MTX_PID=$!
    PIDS+=("$MTX_PID")
    wait_healthy "$MTX_PORT" "$2"
    local i
    for i in $(seq 1 100); do # ready = the JWKS has loaded
        curl -fs -o /dev/null "http://127.0.0.1:$MTX_PORT/readyz" && return 0
        sleep 0.1
    done
    echo "$2 never became ready (JWKS not loaded or Jellyfin not answering); log:" >&2
    cat "$WORK/$2.log" >&2
    exit 1
}
stop_mtx() {
    kill "$MTX_PID"
    wait "$MTX_PID" 2>/dev/null || true
}

start_mtx info mtx-auth
"${SERVER_PIN[@]}" "$BARE_BIN" "127.0.0.1:$BARE_PORT" 2>"$WORK/bare.log" &
BARE_PID=$!
PIDS+=("$BARE_PID")
wait_healthy "$BARE_PORT" bare

check_allowed() { # port body what
    local status
    status="$(curl -sS -o "$WORK/check.out" -w '%{http_code}' -H 'Content-Type: application/json' \
        --data "$2" "http://127.0.0.1:$1/auth")"
    if [[ "$status" != 200 ]]; then
        echo "$3: expected 200, got $status: $(cat "$WORK/check.out")" >&2
        exit 1
    fi
}
check_allowed "$MTX_PORT" "$PLAIN_BODY" "mtx-auth plain"
check_allowed "$MTX_PORT" "$ARGON2_BODY" "mtx-auth argon2 (priming the cache)"
check_allowed "$MTX_PORT" "$JWT_BODY" "mtx-auth jwt (priming the cache)"
check_allowed "$MTX_PORT" "$JELLYFIN_BODY" "mtx-auth jellyfin (priming the cache)"
check_allowed "$BARE_PORT" "$PLAIN_BODY" "bare"

# --- load -------------------------------------------------------------------------------------
# run_wrk port pid lua duration out [connections]: runs wrk, fails on any non-2xx answer; appends
# the server's CPU use during the run (all its threads, % of one core) to the output as
# "server-cpu: N".
CLK_TCK="$(getconf CLK_TCK)"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
run_wrk() {
    local t0 c0 t1 c1
    t0="$(date +%s%N)"
    c0="$(cpu_ticks "$2")"
    "${WRK_PIN[@]}" wrk -t"$THREADS" -c"${6:-$CONNECTIONS}" -d"$4" --latency -s "$3" \
        "http://127.0.0.1:$1/auth" >"$5"
    c1="$(cpu_ticks "$2")"
    t1="$(date +%s%N)"
    awk -v c="$((c1 - c0))" -v t="$((t1 - t0))" -v hz="$CLK_TCK" \
        'BEGIN { printf "server-cpu: %.0f\n", 100 * c / hz / (t / 1e9) }' >>"$5"
    if grep -q 'Non-2xx' "$5"; then
        echo "non-2xx answers in $5:" >&2
        cat "$5" >&2
        exit 1
    fi
}
# count_sent FILE: adds the requests wrk completed against mtx-auth, to compare with the
# decision lines logged.
count_sent() { SENT=$((SENT + $(awk '/requests in/ { print $1 }' "$1"))); }
SENT=0
pct() { awk -v p="$2%" '$1 == p { print $2 }' "$1"; }
cpu() { awk '/^server-cpu:/ { print $2 }' "$1"; }
socket_errors() { awk '/Socket errors/ { sub(/^ *Socket errors: */, ""); print }' "$1"; }

echo "mtx-auth $("$MTX_BIN" --version 2>/dev/null | awk '{print $2}'), $USERS users," \
    "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency," \
    "${SERVER_PIN[*]:-unpinned} servers / ${WRK_PIN[*]:-unpinned} wrk, $(nproc) CPUs$(
        [[ "$SIDE_BY_SIDE" != 1 ]] || echo ', side by side (both servers loaded at once)')"
run_wrk "$MTX_PORT" "$MTX_PID" "$WORK/plain-keepalive.lua" "$WARMUP" "$WORK/warmup.txt"
count_sent "$WORK/warmup.txt"
run_wrk "$BARE_PORT" "$BARE_PID" "$WORK/plain-keepalive.lua" "$WARMUP" "$WORK/warmup.txt"

# median_file FILE...: the wrk output with the median req/s (the lower middle one for an even count).
median_file() {
    local f
    for f in "$@"; do
        echo "$(rps "$f") $f"
    done | sort -n | awk '{ a[NR] = $2 } END { print a[int((NR + 1) / 2)] }'
}
# ratio A B: 100 * A / B, to one decimal.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", 100 * a / b }'; }
# us_per_req FILE: server CPU time per answered request, in microseconds.
us_per_req() { awk -v c="$(cpu "$1")" -v r="$(rps "$1")" 'BEGIN { printf "%.1f", c * 1e4 / r }'; }

ROWS=()
NOTES=()
scenario() { # label lua-name tag [connections]: ROUNDS rounds, alternating which server goes first (or both at once)
    local i m b ms=() bs=() ratios=() rm rb f c="${4:-$CONNECTIONS}"
    for ((i = 1; i <= ROUNDS; i++)); do
        m="$WORK/$2.$3.c$c.r$i.mtx.txt"
        b="$WORK/$2.$3.c$c.r$i.bare.txt"
        if [[ "$SIDE_BY_SIDE" == 1 ]]; then
            run_wrk "$MTX_PORT" "$MTX_PID" "$WORK/$2.lua" "$DURATION" "$m" "$c" &
            local on_mtx=$!
            run_wrk "$BARE_PORT" "$BARE_PID" "$WORK/$2.lua" "$DURATION" "$b" "$c" &
            wait "$on_mtx"
            wait "$!"
        elif ((i % 2)); then
            run_wrk "$MTX_PORT" "$MTX_PID" "$WORK/$2.lua" "$DURATION" "$m" "$c"
            run_wrk "$BARE_PORT" "$BARE_PID" "$WORK/$2.lua" "$DURATION" "$b" "$c"
        else
            run_wrk "$BARE_PORT" "$BARE_PID" "$WORK/$2.lua" "$DURATION" "$b" "$c"
            run_wrk "$MTX_PORT" "$MTX_PID" "$WORK/$2.lua" "$DURATION" "$m" "$c"
        fi
        count_sent "$m"
        ms+=("$m")
        bs+=("$b")
        ratios+=("$(ratio "$(rps "$m")" "$(rps "$b")")")
        for f in "$m" "$b"; do
            [[ -z "$(socket_errors "$f")" ]] ||
                NOTES+=("$1 ($(basename "$f")): socket errors: $(socket_errors "$f")")
        done
    done
    m="$(median_file "${ms[@]}")"
    b="$(median_file "${bs[@]}")"
    rm="$(rps "$m")"
    rb="$(rps "$b")"
    ROWS+=("$(printf '%-24s %8s %8s %6s %8s %8s %8s %8s %5s %5s %6s %6s' "$1" "$rm" "$rb" \
        "$(ratio "$rm" "$rb")" \
        "$(pct "$m" 50)" "$(pct "$m" 99)" "$(pct "$b" 50)" "$(pct "$b" 99)" \
        "$(cpu "$m")" "$(cpu "$b")" "$(us_per_req "$m")" "$(us_per_req "$b")")")
    if ((ROUNDS > 1)); then
        ROWS+=("$(printf '  rounds r/s: mtx %s/ bare %s' \
            "$(for f in "${ms[@]}"; do rps "$f"; echo -n ' '; done)" \
            "$(for f in "${bs[@]}"; do rps "$f"; echo -n ' '; done)")")
        # Each round's two runs are back to back, so they share whatever the host was doing:
        # the median of the per-round ratios is less at the mercy of a noisy neighbour than the
        # ratio of the two medians above, which may come from different rounds.
        ROWS+=("$(printf '  rounds ratio%%: %s; median %s' "${ratios[*]}" \
            "$(printf '%s\n' "${ratios[@]}" | sort -n |
                awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')")")
        ROWS+=("$(printf '  rounds p50: mtx %s/ bare %s; medians %s / %s' \
            "$(for f in "${ms[@]}"; do printf '%s ' "$(pct "$f" 50)"; done)" \
            "$(for f in "${bs[@]}"; do printf '%s ' "$(pct "$f" 50)"; done)" \
            "$(median_p50 "${ms[@]}")" "$(median_p50 "${bs[@]}")")")
    fi
}
# median_p50 FILE...: the median of the runs' p50 latencies (wrk's units, e.g. 71.00us).
median_p50() {
    local f
    for f in "$@"; do
        pct "$f" 50
    done | awk '{ v = $1; u = v; sub(/^[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
                  m = (u == "ms") ? 1000 : (u == "s") ? 1e6 : 1; print v * m }' |
        sort -n | awk '{ a[NR] = $1 } END { printf "%.0fus", a[int((NR + 1) / 2)] }'
}

scenario "plain/keep-alive" plain-keepalive info
scenario "plain/close" plain-close info
scenario "argon2-cached/keep-alive" argon2-keepalive info
scenario "argon2-cached/close" argon2-close info
scenario "plain/close -c1" plain-close info 1
if [[ "$SCENARIOS" != headline ]]; then
    scenario "jwt-cached/keep-alive" jwt-keepalive info
    scenario "jwt-cached/close" jwt-close info
    scenario "jellyfin-cached/keep-alive" jellyfin-keepalive info
    scenario "jellyfin-cached/close" jellyfin-close info
fi
# Requests answered at RUST_LOG=info: warm-up, the scenarios and the four curl checks.
SENT_INFO=$((SENT + 4))
decisions="$(grep -c 'outcome="allow"\|outcome=allow' "$WORK/mtx-auth.log" || true)"

if [[ "$WARN_RUN" == 1 ]]; then
    # Not the headline: the same server with its decision log lines filtered out.
    stop_mtx
    start_mtx warn mtx-auth-warn
    check_allowed "$MTX_PORT" "$ARGON2_BODY" "mtx-auth argon2 (priming the cache, RUST_LOG=warn)"
    run_wrk "$MTX_PORT" "$MTX_PID" "$WORK/plain-keepalive.lua" "$WARMUP" "$WORK/warmup.txt"
    scenario "plain/keep-alive [warn]" plain-keepalive warn
    scenario "plain/close [warn]" plain-close warn
fi

echo
printf '%-24s %8s %8s %6s %8s %8s %8s %8s %5s %5s %6s %6s\n' scenario "mtx r/s" "bare r/s" \
    "ratio%" "mtx p50" "mtx p99" "bare p50" "bare p99" "mtx%" "bare%" "mtx us" "bare us"
printf '%s\n' "${ROWS[@]}"
echo
echo "r/s: median of $ROUNDS round(s); latencies and CPU from that median run of each server."
[[ "$SIDE_BY_SIDE" != 1 ]] ||
    echo "side by side: each round loads both servers at once; they share a CPU, so r/s are about half of a server's own."
((ROUNDS == 1)) || echo "rounds ratio%: each round's mtx r/s over the bare r/s of the run beside it, and their median."
echo "mtx%/bare%: CPU used by each server during the run, in % of one core (all its threads);"
echo "mtx us/bare us: that CPU time per answered request, in microseconds."
echo "mtx-auth answered $SENT_INFO requests at RUST_LOG=info and logged $decisions allow lines" \
    "($(wc -c <"$WORK/mtx-auth.log") bytes; fewer lines than requests means lines were lost;" \
    "a few more are answers wrk stopped waiting for at the end of a run)."
[[ "$WARN_RUN" != 1 ]] || echo "[warn] rows: mtx-auth with RUST_LOG=warn (no decision lines); not the headline."
if ((${#NOTES[@]})); then
    printf '%s\n' "${NOTES[@]}"
fi
