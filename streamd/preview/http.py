"""The preview's HTTP server: the standard library's ThreadingHTTPServer, as for /metrics.

One thread per connection suits a handful of viewers (``preview.max_viewers``, 4 by default) and an
MJPEG stream is a loop of blocking writes; an event loop or a web framework would add a dependency
and buy nothing here. It is a second server on its own address, not routes on the metrics port:
metrics are often opened to a Prometheus on another host, camera pictures should not follow them.

Routes: ``/`` (index), ``/sources.json``, ``/sources/ID`` (page), ``/sources/ID/stream.mjpg``
(multipart/x-mixed-replace), ``/sources/ID/snapshot.jpg`` (the next annotated frame). A viewer that
stops reading hits the socket's send timeout (``preview.client_timeout_seconds``) and is dropped.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from streamd.config.load import split_bind
from streamd.config.schema import PreviewConfig
from streamd.errors import StreamdError
from streamd.preview.hub import PreviewHub, TooManyViewersError
from streamd.preview.pages import index_page, not_found_page, source_page, summaries

log = logging.getLogger(__name__)

BOUNDARY = "streamdframe"
# How often a stream waiting for a frame checks that the server is still running.
WAIT_SLICE_SECONDS = 0.5


ResultHook = Callable[[object, float], None]


def build_preview(config: PreviewConfig, sources: Callable[[], Mapping[str, str]],
                  class_names: Callable[[], Sequence[str]], chained: ResultHook | None = None,
                  overlay: Callable[[str], object | None] | None = None) -> PreviewServer:
    """A bound (not yet started) preview. ``sources`` gives the current source ids and states,
    ``class_names`` the current model's names (both change on a reload), ``overlay`` a source's zones and
    lines with their counts (streamd.analytics). Its ``on_result`` feeds the hub, then calls ``chained``
    (the service's own hook), if any."""
    hub = PreviewHub(sources, class_names, config.fps, config.max_width, config.jpeg_quality, config.max_viewers,
                     overlay)
    host, port = split_bind(config.bind, "preview.bind")
    return PreviewServer(host, port, hub, config.client_timeout_seconds, chained)


class PreviewServer:
    def __init__(self, host: str, port: int, hub: PreviewHub, client_timeout_seconds: float,
                 chained: ResultHook | None = None) -> None:
        handler = _handler_class(hub, client_timeout_seconds)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as error:
            raise StreamdError(f"cannot serve the preview on {host}:{port}: {error.strerror} "
                               "(set preview.bind)") from error
        self._server.daemon_threads = True
        self.hub = hub
        self._chained = chained
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="preview-http", daemon=True)

    def on_result(self, result: object, frame_age_seconds: float) -> None:
        """The pipeline's hook (called before the frame is released)."""
        self.hub.observe(result, frame_age_seconds)
        if self._chained is not None:
            self._chained(result, frame_age_seconds)

    def start(self) -> None:
        self.hub.start()
        self._thread.start()
        log.info("preview on http://%s:%d/", self.host, self.port)

    def close(self) -> None:
        self.hub.close()  # ends every open stream
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(2.0)
        self._server.server_close()


class PreviewRequestHandler(BaseHTTPRequestHandler):
    """What every preview page server shares (this process's, and a supervisor's relay)."""

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("preview http: " + format, *args)


def _handler_class(hub: PreviewHub, client_timeout_seconds: float) -> type:
    class Handler(PreviewRequestHandler):
        timeout = client_timeout_seconds  # socket timeout: a viewer that stops reading is dropped

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            parts = path.strip("/").split("/")
            if path == "/":
                self._reply(200, "text/html; charset=utf-8", index_page(hub).encode())
            elif path == "/sources.json":
                self._reply(200, "application/json", json.dumps({"sources": summaries(hub)}).encode())
            elif parts[0] == "sources" and len(parts) in (2, 3) and parts[1] in hub.states():
                self._source(parts[1], parts[2] if len(parts) == 3 else "")
            else:
                self._reply(404, "text/html; charset=utf-8", not_found_page(path, list(hub.states())).encode())

        def _source(self, source_id: str, what: str) -> None:
            if what == "":
                self._reply(200, "text/html; charset=utf-8", source_page(hub, source_id).encode())
            elif what in ("stream.mjpg", "snapshot.jpg"):
                try:
                    with hub.watch(source_id) as view:
                        (self._stream if what == "stream.mjpg" else self._snapshot)(view)
                except TooManyViewersError as error:
                    self._reply(503, "text/plain", f"{error}\n".encode())
                except KeyError:  # removed by a reload meanwhile
                    self._reply(404, "text/html; charset=utf-8", not_found_page(self.path, list(hub.states())).encode())
                except (ConnectionError, TimeoutError) as error:
                    log.info("preview: viewer %s of %s dropped (%s)", self.client_address[0], source_id,
                             type(error).__name__)
                    self.close_connection = True
            else:
                self._reply(404, "text/html; charset=utf-8",
                            not_found_page(self.path, list(hub.states())).encode())

        def _stream(self, view) -> None:  # noqa: ANN001 - SourceView
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            sequence = 0
            while not hub.stopped:
                got = view.wait_newer(sequence, WAIT_SLICE_SECONDS)
                if got is None:
                    if self._client_gone():  # a source with no frames must not hold a closed viewer
                        return
                    continue
                sequence, jpeg = got
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                                 "\r\n\r\n".encode() + jpeg + b"\r\n")

        def _client_gone(self) -> bool:
            """The viewer closed its end (readable with nothing to read); a viewer sends nothing."""
            try:
                readable, _, _ = select.select([self.connection], [], [], 0)
                return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                return True

        def _snapshot(self, view) -> None:  # noqa: ANN001 - SourceView
            deadline_slices = max(1, int(client_timeout_seconds / WAIT_SLICE_SECONDS))
            for _ in range(deadline_slices):
                got = view.wait_newer(view.jpeg_sequence, WAIT_SLICE_SECONDS)
                if got is not None:
                    self._reply(200, "image/jpeg", got[1])
                    return
                if hub.stopped:
                    break
            self._reply(503, "text/plain", b"no frame came in time: is the source streaming?\n")

    return Handler
