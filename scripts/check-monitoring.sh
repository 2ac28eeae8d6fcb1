#!/usr/bin/env bash
# CI checks for the monitoring kit (deploy/prometheus/, deploy/grafana/):
#   1. `promtool check rules` on deploy/prometheus/alerts.yml (syntax, PromQL, templates)
#   2. `promtool test rules` on deploy/prometheus/alerts_test.yml: every alert fires on its
#      synthetic series and stays quiet on the others; the recording rules give the values
#      worked out by hand
#   3. the Grafana dashboard deploy/grafana/mtx-auth.json is JSON, every query names the
#      templated data source and has an expression
# Whether each dashboard query parses, and the rules against live mtx-auth metrics, is checked
# by a real Prometheus in tests/it/monitoring.rs (`cargo test --test it monitoring`).
# promtool comes with Debian's prometheus package (apt-get install prometheus); PROMTOOL=PATH
# uses another. Prints one line per check; exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RULES=deploy/prometheus/alerts.yml
RULE_TESTS=deploy/prometheus/alerts_test.yml
DASHBOARD=deploy/grafana/mtx-auth.json

passed=0
ok() {
  echo "check-monitoring: ok   $*"
  passed=$((passed + 1))
}
fail() {
  echo "check-monitoring: FAIL $*" >&2
  exit 1
}

PROMTOOL="${PROMTOOL:-$(command -v promtool || true)}"
[ -n "$PROMTOOL" ] && [ -x "$PROMTOOL" ] ||
  fail "promtool not found: apt-get install prometheus (or set PROMTOOL=PATH)"

# --- 1. the rules parse -------------------------------------------------------------------------
if out="$("$PROMTOOL" check rules "$RULES" 2>&1)"; then
  ok "promtool check rules $RULES: $(grep -o '[0-9]* rules found' <<<"$out")"
else
  echo "$out" >&2
  fail "promtool check rules $RULES"
fi

# --- 2. the rules' unit tests -------------------------------------------------------------------
if out="$("$PROMTOOL" test rules "$RULE_TESTS" 2>&1)"; then
  ok "promtool test rules $RULE_TESTS"
else
  echo "$out" >&2
  fail "promtool test rules $RULE_TESTS"
fi

# Every alert has a test case (the cases are named after their alert).
mapfile -t alerts < <(sed -n 's/^ *- alert: *\([A-Za-z0-9_]*\).*/\1/p' "$RULES")
[ "${#alerts[@]}" -gt 0 ] || fail "no alerts found in $RULES"
for a in "${alerts[@]}"; do
  grep -q "alertname: $a\$" "$RULE_TESTS" || fail "$RULE_TESTS has no case for $a"
done
ok "$RULE_TESTS covers all ${#alerts[@]} alerts"

# --- 3. the dashboard -----------------------------------------------------------------------------
if out="$("${PYTHON:-python3}" - "$DASHBOARD" 2>&1 <<'EOF'
import json, sys

path = sys.argv[1]
with open(path, encoding="utf-8") as f:
    dashboard = json.load(f)
names = [v["name"] for v in dashboard["templating"]["list"]]
assert names[:2] == ["datasource", "instance"], f"template variables: {names}"
queries = 0
for panel in dashboard["panels"]:
    for t in panel.get("targets", []):
        assert t.get("expr"), f"panel {panel['title']!r}: a query without an expression"
        assert t["datasource"]["uid"] == "${datasource}", f"panel {panel['title']!r}: fixed data source"
        queries += 1
assert queries > 0, "no queries"
print(f"{len(dashboard['panels'])} panels, {queries} queries")
EOF
)"; then
  ok "$DASHBOARD: $out"
else
  echo "$out" >&2
  fail "$DASHBOARD"
fi

echo "check-monitoring: $passed passed, 0 failed"
