"""An HTTP(S) server in a thread that receives a webhook sink's requests: it checks each one's signature with
the ``verify`` function docs/sinks.md gives receivers (read from the page, so the page cannot drift), records
it, and answers what the test sets."""

from __future__ import annotations

import re
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support import REPO


def docs_verify() -> Callable[..., bool]:
    """The ``verify`` function of docs/sinks.md's webhook section."""
    page = (REPO / "docs" / "sinks.md").read_text()
    code = next(block for block in re.findall(r"```python\n(.*?)```", page, re.DOTALL) if "def verify(" in block)
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 (the project's own documentation)
    return namespace["verify"]


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes
    valid: bool  # the signature verified
    at: float  # time.monotonic() when it arrived
    status: int = 0  # what it was answered


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1, signed by itself (openssl's CLI)."""
    certificate, key = folder / "server.pem", folder / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(certificate), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return certificate, key


class Receiver:
    """Answers ``status`` (with ``retry_after`` as Retry-After when set), or what ``answer(request)`` returns."""

    def __init__(self, secret: bytes, certificate: tuple[Path, Path] | None = None) -> None:
        self.secret = secret
        self.verify = docs_verify()
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.status = 200
        self.retry_after: str | None = None
        self.answer: Callable[[Request], int] | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # kept-alive connections, as a production server

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = dict(self.headers.items())
                request = Request(headers, body, receiver.verify(receiver.secret, headers, body), time.monotonic())
                with receiver.lock:
                    receiver.requests.append(request)
                    status = request.status = receiver.answer(request) if receiver.answer else receiver.status
                    retry_after = receiver.retry_after
                reply = b"" if status < 300 else b"not now" if status >= 500 else b"bad request body"
                self.send_response(status)
                if retry_after is not None and status >= 400:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*certificate)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="receiver", daemon=True)
        self._thread.start()

    def accepted(self) -> list[Request]:
        """The requests answered 2xx, in arrival order."""
        with self.lock:
            return [request for request in self.requests if 200 <= request.status < 300]

    def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.02)
        return condition()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
