#!/usr/bin/env python3
"""Structural check of the Grafana dashboards, and every panel query run
against a live Prometheus.

usage: check_dashboards.py PROMETHEUS_URL DASHBOARD.json...

Fails (exit 1) on a dashboard that lacks what Grafana needs to load it
(uid, title, schemaVersion, panels with id/type/title/gridPos inside the
24-column grid, targets with refId and expr, the datasource and sp template
variables), on a query that uses a metric mgsd does not export, and on a
query Prometheus rejects.
"""
import json
import pathlib
import re
import sys
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
PANEL_TYPES = {"stat", "timeseries", "table", "bargauge", "gauge", "state-timeline", "text", "row", "heatmap", "piechart"}
errors = []


def fail(msg):
    errors.append(msg)


def known_metrics():
    """Every metric name the daemon's code defines."""
    names = set()
    for src in list((ROOT / "actors" / "src").glob("*.rs")) + list((ROOT / "daemon" / "src").rglob("*.rs")):
        names.update(re.findall(r'"(mgsd_[a-z0-9_]+)"', src.read_text()))
    out = set(names)
    for n in names:
        out.update({n + "_bucket", n + "_sum", n + "_count"})
    return out


def substitute(expr):
    return (expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
            .replace("${sp}", ".*").replace("$sp", ".*"))


def query(prom, expr):
    url = prom.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        body = json.load(e)
    return body


def check(path, prom, metrics):
    d = json.loads(pathlib.Path(path).read_text())
    name = pathlib.Path(path).name
    for key, typ in [("uid", str), ("title", str), ("schemaVersion", int), ("panels", list), ("templating", dict)]:
        if not isinstance(d.get(key), typ):
            fail(f"{name}: missing or mistyped {key!r}")
    if isinstance(d.get("uid"), str) and not (0 < len(d["uid"]) <= 40):
        fail(f"{name}: uid must be 1-40 characters")
    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    if variables.get("datasource", {}).get("type") != "datasource":
        fail(f"{name}: needs a 'datasource' template variable of type datasource")
    if "sp" not in variables:
        fail(f"{name}: needs an 'sp' template variable")
    ids = set()
    queries = 0
    for p in d.get("panels", []):
        title = p.get("title")
        where = f"{name}: panel {title!r}"
        if not isinstance(p.get("id"), int) or p["id"] in ids:
            fail(f"{where}: id missing or duplicated")
        ids.add(p.get("id"))
        if p.get("type") not in PANEL_TYPES:
            fail(f"{where}: unknown type {p.get('type')!r}")
        if not isinstance(title, str) or not title:
            fail(f"{where}: no title")
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in "xywh") or g.get("x", 0) + g.get("w", 0) > 24:
            fail(f"{where}: bad gridPos {g}")
        if p.get("datasource", {}).get("uid") != "${datasource}":
            fail(f"{where}: datasource must be the ${{datasource}} variable")
        targets = p.get("targets", [])
        if p.get("type") not in ("text", "row") and not targets:
            fail(f"{where}: no targets")
        for t in targets:
            expr = t.get("expr")
            if not t.get("refId") or not isinstance(expr, str) or not expr.strip():
                fail(f"{where}: target without refId or expr")
                continue
            for m in re.findall(r"\bmgsd_[a-z0-9_]+", expr):
                if m not in metrics:
                    fail(f"{where}: unknown metric {m}")
            queries += 1
            if prom:
                body = query(prom, substitute(expr))
                if body.get("status") != "success":
                    fail(f"{where}: Prometheus rejected {expr!r}: {body.get('error')}")
    return queries


def main():
    prom = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1].startswith("http") else None
    files = [a for a in sys.argv[1:] if a.endswith(".json")]
    if not files:
        print(__doc__)
        return 2
    metrics = known_metrics()
    total = sum(check(f, prom, metrics) for f in files)
    for e in errors:
        print("dashboard check:", e)
    print(f"dashboards: {len(files)} files, {total} queries" + (" executed" if prom else "") + f", {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
