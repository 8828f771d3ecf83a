"""A real Prometheus (Debian's) scrapes a running daemon; every query of the Grafana dashboard
(ops/grafana/streamd.json) returns series, its variables' queries find the daemon and its sources,
and the alert rules load and evaluate without error.

With STREAMD_DOCS_IMAGES=DIR (and Chromium), each panel's query is drawn to DIR/dashboard_queries.png
(the picture in docs/operating.md)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ops.support import DASHBOARD, RULES, prometheus_binary
from tests.support import free_port, http_get, wait_for_http

RATE_WINDOW = "15s"  # what Grafana's $__rate_interval becomes at a 1 s scrape interval, with margin
DEADLINE_SECONDS = 120.0
DOCS_IMAGE_SECONDS = 70.0


def panel_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target, with the dashboard's variables set to 'all'."""
    queries = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = (target["expr"].replace("$__rate_interval", RATE_WINDOW)
                    .replace("$instance", ".*").replace("$source", ".*"))
            assert "$" not in expr, f"{panel['title']}: unresolved variable in {expr}"
            queries.append((panel["title"], expr))
    return queries


def test_dashboard_is_importable_with_a_data_source_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] and dashboard["title"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    metrics = {m for _, q in panel_queries(dashboard) for m in re.findall(r"streamd_[a-z_]+", q)}
    # Every family an operator watches has a panel.
    for needed in ("streamd_frames_processed_total", "streamd_frame_age_seconds_bucket", "streamd_stage_seconds_bucket",
                   "streamd_frames_dropped_total", "streamd_source_state", "streamd_source_reconnects_total",
                   "streamd_messages_dropped_total", "streamd_batch_size_bucket", "streamd_sink_connected",
                   "streamd_sink_dropped_total", "streamd_sink_buffered_messages"):
        assert needed in metrics, needed


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator:
    binary = prometheus_binary("prometheus")
    prometheus_binary("promtool")
    started: list[subprocess.Popen] = []

    def start(targets: list[str]) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{RULES}"]
scrape_configs:
  - job_name: streamd
    static_configs:
      - targets: {json.dumps(targets)}
""")
        log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed with the process
        started.append(subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/-/ready", 60)
        return url

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


# A webhook sink whose receiver is not there (a port nothing listens on): its series exist, at 0 connected.
def dead_sink() -> str:
    return f"""
[[sinks]]
kind = "webhook"
name = "hook"
url = "http://127.0.0.1:{free_port()}/hook"
secret = "s"
"""


def query(url: str, expr: str) -> list[dict]:
    status, body = http_get(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}", timeout=10)
    answer = json.loads(body)
    assert status == 200 and answer["status"] == "success", f"{expr}: {body[:500]}"
    return answer["data"]["result"]


def test_every_dashboard_query_returns_series_from_a_running_daemon(
        tiny_model: Path, tiny_image: Path, tmp_path: Path, daemon_factory, prometheus) -> None:  # noqa: ANN001
    metrics_port = free_port()
    daemon = daemon_factory(f"""
[[sources]]
id = "still"
kind = "image"
url = "{tiny_image}"
loop = true
fps = 20
[[sources]]
id = "gone"
kind = "file"
url = "{tmp_path / 'not-there.mp4'}"
backoff_initial_seconds = 0.2
backoff_max_seconds = 0.5
[model]
path = "{tiny_model}"
[publish]
endpoint = "tcp://127.0.0.1:{free_port()}"
[metrics]
bind = "127.0.0.1:{metrics_port}"
""" + dead_sink())
    wait_for_http(f"http://127.0.0.1:{metrics_port}/healthz", 60)
    url = prometheus([f"127.0.0.1:{metrics_port}"])
    started = time.monotonic()
    dashboard = json.loads(DASHBOARD.read_text())
    # One process has no worker series; the service with workers is scraped below.
    queries = [(title, expr) for title, expr in panel_queries(dashboard) if "streamd_worker_" not in expr]
    deadline = time.monotonic() + DEADLINE_SECONDS
    empty = queries
    while empty and time.monotonic() < deadline:
        time.sleep(1.0)
        empty = [(title, expr) for title, expr in queries if not query(url, expr)]
    assert daemon.process.poll() is None, daemon.log()
    assert not empty, f"dashboard queries without series after {DEADLINE_SECONDS:.0f} s: {empty}"
    # The variables' queries find the daemon and both sources.
    assert query(url, "streamd_build_info")
    assert {r["metric"]["source"] for r in query(url, "streamd_source_up")} == {"still", "gone"}
    # Values that must be real numbers by now: the streaming source's fps and frame age.
    fps = query(url, f'sum by (source) (rate(streamd_frames_processed_total{{source="still"}}[{RATE_WINDOW}]))')
    assert float(fps[0]["value"][1]) > 1.0
    age = query(url, f'histogram_quantile(0.99, sum by (le) (rate(streamd_frame_age_seconds_bucket{{source="still"}}'
                     f'[{RATE_WINDOW}])))')
    assert 0.0 < float(age[0]["value"][1]) < 2.0
    # The rules loaded and evaluate cleanly against the real series.
    _, body = http_get(f"{url}/api/v1/rules", timeout=10)
    groups = json.loads(body)["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) >= 10 and all(rule["health"] == "ok" for rule in rules), rules
    images = os.environ.get("STREAMD_DOCS_IMAGES")
    if images:
        from tests.ops.render import render_queries  # noqa: PLC0415

        time.sleep(max(0.0, started + DOCS_IMAGE_SECONDS - time.monotonic()))  # a minute of data to draw

        render_queries(url, queries, Path(images) / "dashboard_queries.png", tmp_path)


def test_one_scrape_of_a_service_with_workers_holds_every_source(
        tiny_model: Path, tiny_image: Path, daemon_factory, prometheus) -> None:  # noqa: ANN001
    """A supervisor with two workers: Prometheus scrapes its one metrics port and finds every source's
    series, the workers' own, and every dashboard query (the worker panel included) returns series."""
    metrics_port = free_port()
    sources = "".join(f'[[sources]]\nid = "{name}"\nkind = "image"\nurl = "{tiny_image}"\nloop = true\nfps = 10\n'
                      for name in ("north", "south", "east"))
    daemon = daemon_factory(sources + f"""
[model]
path = "{tiny_model}"
[publish]
endpoint = "tcp://127.0.0.1:{free_port()}"
[metrics]
bind = "127.0.0.1:{metrics_port}"
[daemon]
workers = 2
""" + dead_sink(), name="service")
    wait_for_http(f"http://127.0.0.1:{metrics_port}/healthz", 60)
    url = prometheus([f"127.0.0.1:{metrics_port}"])
    queries = panel_queries(json.loads(DASHBOARD.read_text()))
    deadline = time.monotonic() + DEADLINE_SECONDS
    empty = queries
    while empty and time.monotonic() < deadline:
        time.sleep(1.0)
        empty = [(title, expr) for title, expr in queries if not query(url, expr)]
    assert daemon.process.poll() is None, daemon.log()
    assert not empty, f"dashboard queries without series after {DEADLINE_SECONDS:.0f} s: {empty}"
    up = query(url, "streamd_source_up")
    assert {r["metric"]["source"] for r in up} == {"north", "south", "east"}
    assert {r["metric"]["instance"] for r in up} == {f"127.0.0.1:{metrics_port}"}  # one target
    assert {r["metric"]["worker"] for r in query(url, "streamd_worker_up == 1")} == {"0", "1"}
    assert {r["metric"]["worker"] for r in query(url, "streamd_build_info")} == {"0", "1"}
    expr = f"sum by (source) (rate(streamd_frames_processed_total[{RATE_WINDOW}])) > 1"
    while time.monotonic() < deadline and len(query(url, expr)) < 3:  # a rate needs two scrapes of each
        time.sleep(1.0)
    assert {r["metric"]["source"] for r in query(url, expr)} == {"north", "south", "east"}
