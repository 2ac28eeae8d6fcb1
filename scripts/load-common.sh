# shellcheck shell=bash
# Sourced by scripts/load.sh and scripts/compare-builds.sh: what both set up the same way.

# shellcheck disable=SC2016 # a literal PHC string, not an expansion
ARGON2_TESTPASS='argon2:$argon2i$v=19$m=4096,t=3,p=1$MTIzNDU2Nzg$/mrZ42TiTv1mcPnpMUera5oi0SFYbbyueAbdx5sUvWo'

# load_users N: N users as TOML, fillers first (one permission each) and last the two the load
# hits: viewer/viewpass (plain) and argonuser/testpass (argon2).
load_users() {
    awk -v n="$(($1 > 2 ? $1 - 2 : 0))" 'BEGIN {
        for (i = 0; i < n; i++)
            printf "[[users]]\nuser = \"user%d\"\npass = \"pass%d\"\npermissions = [{ action = \"read\", path = \"cam/%d\" }]\n\n", i, i, i
    }'
    cat <<EOT
[[users]]
user = "viewer"
pass = "viewpass"
permissions = [{ action = "read" }]

[[users]]
user = "argonuser"
pass = "$ARGON2_TESTPASS"
permissions = [{ action = "read" }]
EOT
}

# pin_load: SERVER_PIN and WRK_PIN, the commands that put servers on CPU 1 and wrk on CPU 0
# (empty with PIN=0, without taskset, or on one CPU).
pin_load() {
    SERVER_PIN=()
    WRK_PIN=()
    if [[ "${PIN:-1}" == 1 ]] && command -v taskset >/dev/null && (($(nproc) >= 2)); then
        SERVER_PIN=(taskset -c 1)
        WRK_PIN=(taskset -c 0)
    fi
}

# start_work NAME: WORK, a new temporary directory, and PIDS, the servers started in it; at
# exit the servers are stopped and the directory removed (kept with KEEP=1).
start_work() {
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
    PIDS=()
    trap stop_work EXIT
}
stop_work() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ "${KEEP:-0}" == 1 ]]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}

# rps FILE: the requests per second of a wrk output, rounded.
rps() { awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$1"; }
