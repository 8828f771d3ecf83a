"""The preview over real HTTP: index, source page, MJPEG parts, snapshot, 404 naming the sources,
503 past max_viewers, and a viewer that stops reading is dropped while the pipeline's hook stays fast."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

from streamd.preview.http import BOUNDARY, PreviewServer
from streamd.preview.hub import PreviewHub
from tests.preview.support import result
from tests.support import http_get


class Feeder(threading.Thread):
    """Plays the pipeline: results for ``source`` at ``fps``, each observe() call timed."""

    def __init__(self, server: PreviewServer, source: str, fps: float = 100.0, noise: bool = False) -> None:
        super().__init__(daemon=True)
        self.server, self.source, self.period = server, source, 1.0 / fps
        rng = np.random.default_rng(1)
        self.image = (rng.integers(0, 255, (720, 1280, 3), np.uint8) if noise
                      else np.full((480, 640, 3), 80, np.uint8))
        self.stop = threading.Event()
        self.call_seconds: list[float] = []

    def run(self) -> None:
        index = 0
        while not self.stop.is_set():
            started = time.perf_counter()
            self.server.on_result(result(self.source, self.image, [(20, 20, 200, 200)], index=index), 0.01)
            self.call_seconds.append(time.perf_counter() - started)
            index += 1
            time.sleep(self.period)


@pytest.fixture
def server() -> Iterator[PreviewServer]:
    hub = PreviewHub(lambda: {"cam": "streaming", "door": "backing_off"}, lambda: ("person",), fps=20.0,
                     max_width=1280, jpeg_quality=95, max_viewers=2)
    server = PreviewServer("127.0.0.1", 0, hub, client_timeout_seconds=1.0)
    server.start()
    yield server
    server.close()


def _url(server: PreviewServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def test_index_lists_every_source_with_its_state(server: PreviewServer) -> None:
    server.on_result(result("cam", np.zeros((48, 64, 3), np.uint8), [(1, 1, 9, 9)]), 0.0123)
    status, body = http_get(_url(server, "/"))
    assert status == 200
    assert 'href="/sources/cam"' in body and 'href="/sources/door"' in body
    assert "streaming" in body and "backing_off" in body and "12 ms" in body and "person 0.90" in body
    status, body = http_get(_url(server, "/sources/cam"))
    assert status == 200 and 'src="/sources/cam/stream.mjpg"' in body


def test_index_shows_a_thumbnail_of_each_streaming_source(server: PreviewServer) -> None:
    """The index's picture of a source is its next annotated snapshot, fetched like a browser does."""
    import re  # noqa: PLC0415

    feeder = Feeder(server, "cam")
    feeder.start()
    try:
        deadline = time.monotonic() + 10
        while server.hub.view("cam").latest is None and time.monotonic() < deadline:
            time.sleep(0.01)
        status, body = http_get(_url(server, "/"))
        assert status == 200 and "<th>picture</th>" in body
        thumbnails = re.findall(r'<img class="thumb" src="([^"]+)"', body)
        assert thumbnails == ["/sources/cam/snapshot.jpg"], body  # door has sent no frame: no picture
        assert "no recent frame" in body
        status, jpeg = _get_bytes(_url(server, thumbnails[0]))
        assert status == 200 and jpeg[:2] == b"\xff\xd8"
        deadline = time.monotonic() + 5
        while server.hub.viewer_count() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.hub.viewer_count() == 0  # a thumbnail holds no viewer slot once fetched
    finally:
        feeder.stop.set()
        feeder.join(5)


def test_unknown_source_is_404_listing_the_sources(server: PreviewServer) -> None:
    for path in ("/sources/nope", "/sources/nope/stream.mjpg", "/sources/cam/other", "/elsewhere"):
        status, body = http_get(_url(server, path))
        assert status == 404, path
        assert "cam" in body and "door" in body, body


def test_stream_is_multipart_jpeg(server: PreviewServer) -> None:
    feeder = Feeder(server, "cam")
    feeder.start()
    try:
        with urllib.request.urlopen(_url(server, "/sources/cam/stream.mjpg"), timeout=10) as response:
            assert response.headers["Content-Type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
            data = b""
            deadline = time.monotonic() + 20
            while data.count(b"\xff\xd9") < 3 and time.monotonic() < deadline:
                data += response.read1(65536)
        assert data.startswith(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: ".encode())
        assert data.count(b"\xff\xd8") >= 3  # JPEG start markers
        status, jpeg = _get_bytes(_url(server, "/sources/cam/snapshot.jpg"))
        assert status == 200 and jpeg[:2] == b"\xff\xd8"
    finally:
        feeder.stop.set()
        feeder.join(5)


def _get_bytes(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def test_more_viewers_than_allowed_get_503(server: PreviewServer) -> None:
    with server.hub.watch("cam"), server.hub.watch("door"):
        status, body = http_get(_url(server, "/sources/cam/stream.mjpg"))
    assert status == 503 and "max_viewers" in body


def test_a_viewer_that_stops_reading_is_dropped_and_never_slows_the_pipeline(server: PreviewServer) -> None:
    feeder = Feeder(server, "cam", fps=100.0, noise=True)  # large JPEGs (noise) fill the socket fast
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", server.port))
    client.sendall(b"GET /sources/cam/stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
    feeder.start()
    try:
        deadline = time.monotonic() + 30
        while server.hub.viewer_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.hub.viewer_count() == 1
        # Dropped after the send timeout (1 s) once the buffers are full; generous on a busy machine.
        while server.hub.viewer_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.hub.viewer_count() == 0, "the stuck viewer was not dropped"
        assert server.hub.views["cam"].frames_encoded >= 2
    finally:
        feeder.stop.set()
        feeder.join(5)
        client.close()
    calls = np.asarray(feeder.call_seconds)
    # The hook copies (resizes) a picture at most 20 times a second and never waits for the viewer.
    assert len(calls) > 50 and np.percentile(calls, 50) < 0.005 and calls.max() < 0.5, (
        np.percentile(calls, 50), calls.max())


def test_close_ends_open_streams(server: PreviewServer) -> None:
    feeder = Feeder(server, "cam")
    feeder.start()
    response = urllib.request.urlopen(_url(server, "/sources/cam/stream.mjpg"), timeout=10)
    response.read1(100)
    feeder.stop.set()
    feeder.join(5)
    started = time.monotonic()
    server.close()
    rest = b""
    while True:
        chunk = response.read1(65536)
        if not chunk:
            break
        rest += chunk
    assert time.monotonic() - started < 5
    response.close()


def test_a_viewer_that_leaves_a_silent_source_is_let_go(server: PreviewServer) -> None:
    client = socket.create_connection(("127.0.0.1", server.port))
    client.sendall(b"GET /sources/door/stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
    deadline = time.monotonic() + 30
    while server.hub.viewer_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.hub.viewer_count() == 1
    client.close()  # no frame ever comes for "door": nothing is written that could fail
    while server.hub.viewer_count() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.hub.viewer_count() == 0
