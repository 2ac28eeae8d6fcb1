#!/usr/bin/env python3
"""Plots the Grafana dashboard's main queries over a test run: docs/monitoring.png.

Grafana cannot run everywhere the project is built, so this draws what the dashboard
(deploy/grafana/mtx-auth.json) would show, from the real thing: it starts `mtx-auth serve` and
Debian's `prometheus` (scraping it every 2 s, with deploy/prometheus/alerts.yml loaded) on
loopback, drives a scripted run through mtx-auth, then asks Prometheus's /api/v1/query_range for
each chosen panel's own queries (the dashboard's variables filled in as Grafana would) and draws
them with matplotlib, panel titles and legends as in the dashboard.

The run (default 10 minutes): viewers all along (an argon2 user answered from the cache,
anonymous reads of a public path, MediaMTX's credential-less first attempts); a few wrong
passwords from several addresses from 20 %; a password spray from one address between 40 % and
65 % (the limit turns it away: `rate_limited`); a config reload at 55 % (the caches start empty:
argon2 runs again), and a refused one at 75 %.

    cargo build
    python3 -m venv target/plot-venv && target/plot-venv/bin/pip install matplotlib
    target/plot-venv/bin/python scripts/plot-monitoring.py [--minutes 10] [--out docs/monitoring.png]

MTX_AUTH_BIN and PROMETHEUS name the binaries (default: target/debug/mtx-auth, and prometheus
on PATH). Everything runs on 127.0.0.1 and stops at the end.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# `testpass`, argon2i (as in the tests): a real argon2 verification, then cache hits.
ARGON2_TESTPASS = (
    "argon2:$argon2i$v=19$m=4096,t=3,p=1$MTIzNDU2Nzg$/mrZ42TiTv1mcPnpMUera5oi0SFYbbyueAbdx5sUvWo"
)

CONFIG = f"""[server]
max_failures_per_ip = 5

[store]
url = "sqlite://mtx-auth.db"

[[users]]
user = "viewer"
pass = "{ARGON2_TESTPASS}"
permissions = [{{ action = "read" }}]

[[users]]
user = "any"
permissions = [{{ action = "read", path = "public" }}]
"""

# The panels drawn, by their title in the dashboard.
PANELS = [
    "Decisions by outcome and source",
    "Deny reasons",
    "Decision latency",
    "Brute-force limiter",
    "Cache hit ratio",
    "Config reloads",
]

SCRAPE = 2  # seconds


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mtx_auth(binary, workdir):
    config = os.path.join(workdir, "mtx-auth.toml")
    with open(config, "w") as f:
        f.write(CONFIG)
    log = open(os.path.join(workdir, "mtx-auth.log"), "w+")
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--config", config],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "RUST_LOG": "warn,mtx_auth=info,mtx_auth::decision=warn"},
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        with open(log.name) as f:
            m = re.search(r"listening on http://([0-9.:]+)", f.read())
        if m:
            return proc, m.group(1), config
        if proc.poll() is not None:
            sys.exit("mtx-auth exited:\n" + open(log.name).read())
        time.sleep(0.1)
    sys.exit("mtx-auth did not start")


def start_prometheus(binary, workdir, target):
    port = free_port()
    rules = os.path.join(ROOT, "deploy/prometheus/alerts.yml")
    config = os.path.join(workdir, "prometheus.yml")
    with open(config, "w") as f:
        f.write(
            f"global:\n  scrape_interval: {SCRAPE}s\n  scrape_timeout: {SCRAPE}s\n"
            f"  evaluation_interval: {SCRAPE}s\n"
            f"rule_files:\n  - {json.dumps(rules)}\n"
            f"scrape_configs:\n  - job_name: mtx-auth\n    static_configs:\n"
            f"      - targets: [{json.dumps(target)}]\n"
        )
    log = open(os.path.join(workdir, "prometheus.log"), "w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={os.path.join(workdir, 'data')}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(base + "/-/ready") as r:
                if r.status == 200:
                    return proc, base
        except OSError:
            pass
        if proc.poll() is not None:
            sys.exit("prometheus exited:\n" + open(log.name).read())
        time.sleep(0.2)
    sys.exit("prometheus did not become ready")


class Client:
    """POSTs MediaMTX's requests to /auth over one kept-alive connection."""

    def __init__(self, addr):
        self.addr = addr
        self.conn = None

    def auth(self, ip, user, password, path="cam"):
        body = json.dumps(
            {
                "ip": ip,
                "user": user,
                "password": password,
                "token": password,
                "action": "read",
                "path": path,
                "protocol": "rtsp",
                "id": None,
                "query": "",
            }
        )
        for _ in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.addr, timeout=10)
                self.conn.request("POST", "/auth", body, {"Content-Type": "application/json"})
                resp = self.conn.getresponse()
                resp.read()
                return resp.status
            except (OSError, http.client.HTTPException):
                self.conn = None
        raise RuntimeError("mtx-auth does not answer")


def drive(addr, config, proc, seconds):
    """The scripted run; returns the (fraction, label) marks drawn on the plots."""
    viewers, spray = Client(addr), Client(addr)
    start = time.time()
    marks = []
    reloaded = refused = False
    guesses = 0
    tick = 0
    while (now := time.time() - start) < seconds:
        phase = now / seconds
        # Viewers: 10 decisions a second.
        for i in range(2):
            viewers.auth("192.0.2.10", "viewer", "testpass")
            viewers.auth(f"192.0.2.{20 + i}", "", "", path="public")
            viewers.auth(f"192.0.2.{20 + i}", "", "")  # MediaMTX's first attempt
            viewers.auth("192.0.2.10", "viewer", "testpass")
            viewers.auth(f"192.0.2.{30 + i}", "", "", path="public")
        # Wrong passwords now and then, each from its own address (under the limit).
        if phase > 0.2 and tick % 3 == 0:
            viewers.auth(f"198.51.100.{tick % 250}", "viewer", f"wrong{tick}")
        # The spray: 30 guesses a second from one address.
        if 0.4 < phase < 0.65:
            for _ in range(30):
                spray.auth("203.0.113.66", "viewer", f"guess{guesses}")
                guesses += 1
        if phase > 0.55 and not reloaded:
            with open(config, "a") as f:
                f.write('\n[[users]]\nuser = "second"\npass = "second-pw"\n'
                        'permissions = [{ action = "read" }]\n')
            proc.send_signal(signal.SIGHUP)
            marks.append((now, "reload"))
            reloaded = True
        if phase > 0.75 and not refused:
            with open(config, "a") as f:
                f.write("\n[[users]]\nuser =\n")
            proc.send_signal(signal.SIGHUP)
            marks.append((now, "refused reload"))
            refused = True
        tick += 1
        time.sleep(max(0.0, start + tick * 1.0 - time.time()))
    return marks


def query_range(base, expr, start, end, step):
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{params}") as r:
        answer = json.load(r)
    if answer["status"] != "success":
        raise RuntimeError(f"{expr}: {answer}")
    return answer["data"]["result"]


def legend(template, labels):
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    return text.strip() or "value"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--out", default=os.path.join(ROOT, "docs/monitoring.png"))
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mtx_bin = os.environ.get("MTX_AUTH_BIN", os.path.join(ROOT, "target/debug/mtx-auth"))
    prom_bin = os.environ.get("PROMETHEUS") or shutil.which("prometheus")
    if not os.path.exists(mtx_bin):
        sys.exit(f"no {mtx_bin}: run `cargo build` first (or set MTX_AUTH_BIN)")
    if not prom_bin:
        sys.exit("no prometheus: apt-get install prometheus (or set PROMETHEUS)")
    with open(os.path.join(ROOT, "deploy/grafana/mtx-auth.json")) as f:
        dashboard = json.load(f)
    panels = {p["title"]: p for p in dashboard["panels"]}

    workdir = tempfile.mkdtemp(prefix="plot-monitoring-")
    mtx, addr, config = start_mtx_auth(mtx_bin, workdir)
    prom, base = None, None
    try:
        prom, base = start_prometheus(prom_bin, workdir, addr)
        time.sleep(3 * SCRAPE)
        begin = time.time()
        print(f"driving traffic for {args.minutes} minutes through {addr} ...", flush=True)
        marks = drive(addr, config, mtx, args.minutes * 60)
        time.sleep(3 * SCRAPE)
        end = time.time()

        fig, axes = plt.subplots(3, 2, figsize=(14, 11), sharex=True)
        for ax, title in zip(axes.flat, PANELS):
            panel = panels[title]
            unit = panel["fieldConfig"]["defaults"].get("unit", "short")
            for target in panel["targets"]:
                expr = (
                    target["expr"]
                    .replace("$__rate_interval", "1m")
                    .replace("$instance", re.escape(addr).replace("\\", "\\\\"))
                )
                for series in query_range(base, expr, begin, end, SCRAPE):
                    xs = [(float(t) - begin) / 60 for t, _ in series["values"]]
                    ys = [float(v) for _, v in series["values"]]
                    if unit == "s":
                        ys = [y * 1000 for y in ys]
                    ax.plot(xs, ys, label=legend(target.get("legendFormat", ""), series["metric"]))
            for at, label in marks:
                ax.axvline(at / 60, color="grey", linestyle=":", linewidth=1)
                ax.annotate(label, (at / 60, 1), xycoords=("data", "axes fraction"),
                            rotation=90, va="top", ha="right", fontsize=7, color="grey")
            ylabel = {"reqps": "per second", "s": "milliseconds", "percentunit": "ratio"}
            ax.set_ylabel(ylabel.get(unit, ""))
            if unit == "s":
                ax.set_yscale("log")
                ax.axhline(5, color="red", linestyle="--", linewidth=1, label="MtxAuthSlowDecisions (5 ms)")
            ax.set_title(title)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7, loc="upper left")
        for ax in axes[-1]:
            ax.set_xlabel("minutes into the run")
        fig.suptitle("mtx-auth dashboard queries (deploy/grafana/mtx-auth.json) from a real Prometheus",
                     fontsize=13)
        fig.tight_layout()
        fig.savefig(args.out, dpi=80)
        print(f"wrote {args.out}")

        alerts = json.load(urllib.request.urlopen(base + "/api/v1/alerts"))["data"]["alerts"]
        for a in alerts:
            print(f"alert {a['labels']['alertname']}: {a['state']}")
    finally:
        for p in (mtx, prom):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
