"""One preview for the whole service: the index lists every worker's sources; a source's page, MJPEG
stream and snapshot are relayed from the worker that runs it (its preview on a loopback port)."""

from __future__ import annotations

import http.client
import json
import logging
import threading
from http.server import ThreadingHTTPServer
from typing import Protocol

from streamd.config.schema import Config
from streamd.errors import StreamdError
from streamd.preview.http import PreviewRequestHandler
from streamd.preview.pages import index_html, not_found_page
from streamd.supervisor.scrape import worker_json
from streamd.supervisor.workers import Worker


class Supervisor(Protocol):
    """What the preview reads of the supervisor (streamd.supervisor.service.Supervisor)."""

    config: Config
    assignment: dict[str, int]
    workers: list[Worker]

    def worker_addresses(self, kind: str = "metrics") -> list[tuple[int, str]]: ...

log = logging.getLogger(__name__)

RELAY_CHUNK_BYTES = 64 * 1024


class SupervisorPreview:
    def __init__(self, host: str, port: int, supervisor: Supervisor) -> None:
        handler = _handler_class(supervisor)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as error:
            raise StreamdError(f"cannot serve the preview on {host}:{port}: {error.strerror} "
                               "(set preview.bind)") from error
        self._server.daemon_threads = True
        self.host, self.port = host, self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="preview-http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("preview on http://%s:%d/", self.host, self.port)

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(2.0)
        self._server.server_close()


def merged_summaries(supervisor: Supervisor) -> list[dict]:
    replies = worker_json(supervisor.worker_addresses("preview"), "/sources.json")
    summaries = []
    for worker in supervisor.workers:
        listed = {s.get("source"): s for s in replies.get(worker.index, {}).get("sources", [])}
        for source_id in worker.spec.source_ids:
            summaries.append(listed.get(source_id) or {
                "source": source_id, "state": f"worker {worker.state}", "fps": 0.0, "viewers": 0,
                "frame_index": None, "frame_age_seconds": None, "detections": []})
    return summaries


def _handler_class(supervisor: Supervisor) -> type:
    timeout_seconds = supervisor.config.preview.client_timeout_seconds

    class Handler(PreviewRequestHandler):
        timeout = timeout_seconds

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            parts = path.strip("/").split("/")
            source_ids = list(supervisor.assignment)
            if path == "/":
                self._reply(200, "text/html; charset=utf-8", index_html(merged_summaries(supervisor)).encode())
            elif path == "/sources.json":
                self._reply(200, "application/json", json.dumps({"sources": merged_summaries(supervisor)}).encode())
            elif parts[0] == "sources" and len(parts) in (2, 3) and parts[1] in supervisor.assignment:
                worker = supervisor.workers[supervisor.assignment[parts[1]]]
                if not worker.preview_address:
                    self._reply(503, "text/plain", f"worker {worker.index} is {worker.state}: try again\n".encode())
                else:
                    self._relay(worker.preview_address, self.path)
            else:
                self._reply(404, "text/html; charset=utf-8", not_found_page(path, source_ids).encode())

        def _relay(self, address: str, path: str) -> None:
            host, _, port = address.rpartition(":")
            connection = http.client.HTTPConnection(host, int(port), timeout=timeout_seconds)
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("server", "date", "transfer-encoding"):
                        self.send_header(name, value)
                self.end_headers()
                self.close_connection = True
                while chunk := response.read1(RELAY_CHUNK_BYTES):
                    self.wfile.write(chunk)
            except (ConnectionError, TimeoutError, OSError, http.client.HTTPException) as error:
                log.info("preview: relay of %s ended (%s)", path, type(error).__name__)
                self.close_connection = True
            finally:
                connection.close()

    return Handler
