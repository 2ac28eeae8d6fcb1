# shellcheck shell=bash
# Sourced by scripts/load.sh and scripts/compare-builds.sh: the users they load.

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
