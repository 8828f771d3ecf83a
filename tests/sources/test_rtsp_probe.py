"""The RTSP probe and the FFmpeg options, against real sockets (no server process needed)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from streamd.errors import SourceError
from streamd.sources.rtsp import capture_options, probe_server


def test_capture_options_keep_the_users_and_set_transport() -> None:
    assert capture_options("udp", "rtsp_transport;tcp|stimeout;100") == \
        "rtsp_transport;udp|stimeout;100|analyzeduration;500000"
    assert capture_options("tcp", "analyzeduration;2000000") == "analyzeduration;2000000|rtsp_transport;tcp"


def test_probe_refused_port() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(SourceError, match="connection refused"):
        probe_server(f"rtsp://127.0.0.1:{port}/x", 1.0)


def test_probe_silent_server_times_out_quickly() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        started = time.monotonic()
        with pytest.raises(SourceError, match="no answer .* within 0.3 s"):
            probe_server(f"rtsp://user:pw@127.0.0.1:{silent.getsockname()[1]}/x", 0.3)
        assert time.monotonic() - started < 1.0


def test_probe_accepts_any_rtsp_answer_and_rejects_other_protocols() -> None:
    def serve(listener: socket.socket, answer: bytes) -> None:
        connection, _ = listener.accept()
        with connection:
            request = connection.recv(1024)
            if request.startswith(b"OPTIONS rtsp://127.0.0.1:"):  # credentials never sent
                connection.sendall(answer)

    for answer, error in ((b"RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\n\r\n", None),
                          (b"HTTP/1.1 400 Bad Request\r\n\r\n", "does not speak RTSP")):
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            thread = threading.Thread(target=serve, args=(listener, answer))
            thread.start()
            url = f"rtsp://user:pw@127.0.0.1:{listener.getsockname()[1]}/cam"
            if error is None:
                probe_server(url, 2.0)
            else:
                with pytest.raises(SourceError, match=error):
                    probe_server(url, 2.0)
            thread.join()
