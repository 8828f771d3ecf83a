"""HTTP endpoints: /metrics (Prometheus exposition), /healthz (alive), /readyz (serving).

A small threaded server rather than prometheus_client.start_http_server because the health
endpoints live on the same port; exposition itself is prometheus_client's.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from streamd.errors import StreamdError

log = logging.getLogger(__name__)

HealthCheck = Callable[[], tuple[bool, dict]]


class WithoutCreated:
    """A registry's metrics without the ``_created`` samples of counters and histograms.

    They would double the page (one per labelled child) and only say when each series was
    created, which for streamd is the daemon's start. Filtered here rather than with
    ``prometheus_client.disable_created_metrics()``, which is process-wide (tests share a process)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            if metric.type in ("counter", "histogram", "summary", "gaugehistogram"):
                metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric


class MetricsServer:
    def __init__(self, host: str, port: int, registry: CollectorRegistry, health: HealthCheck,
                 readiness: HealthCheck) -> None:
        handler = _handler_class(registry, health, readiness)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as error:
            raise StreamdError(f"cannot serve metrics on {host}:{port}: {error.strerror} (set metrics.bind)") from error
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.host = host
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(2.0)
        self._server.server_close()


def _handler_class(registry: CollectorRegistry, health: HealthCheck, readiness: HealthCheck) -> type:
    exposed = WithoutCreated(registry)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, generate_latest(exposed))
            elif path in ("/healthz", "/readyz"):
                ok, detail = (health if path == "/healthz" else readiness)()
                body = json.dumps({"ok": ok, **detail}).encode()
                self._reply(200 if ok else 503, "application/json", body)
            else:
                self._reply(404, "text/plain", b"not found: try /metrics, /healthz or /readyz\n")

        def _reply(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - scrapes are not news
            log.debug("http: " + format, *args)

    return Handler
