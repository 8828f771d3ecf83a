"""A real ``nats-server -js`` for the NATS sink tests, on a free port with its store in a temporary folder,
stopped (SIGKILL too) and started again at will; and a reader of what its stream holds."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import free_port, skip_unless_required

NATS_SERVER = shutil.which("nats-server") or ("/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists()
                                              else None)


def require_nats() -> None:
    if NATS_SERVER is None:
        skip_unless_required("nats", "nats-server is not installed (Debian package nats-server)")
    try:
        import nats  # noqa: F401, PLC0415
    except ImportError:
        skip_unless_required("nats", "nats-py is not installed (pip install 'streamd[nats]')")


class NatsServer:
    """nats-server with JetStream on 127.0.0.1:``port``, its store in ``folder``/store (kept across restarts,
    as a production server's disk is); ``password``: only the user ``streamd`` with it may connect."""

    def __init__(self, folder: Path, password: str = "") -> None:
        self.port = free_port()
        self.folder = folder
        self.url = f"nats://127.0.0.1:{self.port}"
        self.config = folder / "nats.conf"
        text = f"listen: 127.0.0.1:{self.port}\njetstream {{\n  store_dir: \"{folder / 'store'}\"\n}}\n"
        if password:
            text += f"authorization {{\n  user: streamd\n  password: \"{password}\"\n}}\n"
        self.config.write_text(text)
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log_path = self.folder / f"nats{self.starts}.log"
        log = open(log_path, "wb")  # noqa: SIM115 (kept by the process)
        self.process = subprocess.Popen([NATS_SERVER, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2) as connection:
                    if connection.recv(4).startswith(b"INFO"):  # the server speaks: JetStream is set up
                        return
            except OSError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"nats-server did not start: {log_path.read_text()}")

    def stop(self, signal_number: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal_number)
            self.process.wait(10)


@dataclass(frozen=True)
class Stored:
    sequence: int  # the stream's sequence number
    subject: str
    message_id: str  # the Nats-Msg-Id header
    data: bytes


def read_stream(url: str, stream: str = "STREAMD", user: str = "", password: str = "") -> list[Stored]:
    """Every message the stream holds, in stream order."""
    return asyncio.run(_read_stream(url, stream, user, password))


async def _read_stream(url: str, stream: str, user: str, password: str) -> list[Stored]:
    import nats  # noqa: PLC0415
    from nats.js.errors import NotFoundError  # noqa: PLC0415

    options = {"user": user, "password": password} if user else {}
    client = await nats.connect(url, allow_reconnect=False, **options)
    try:
        js = client.jetstream(timeout=5)
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            return []
        stored = []
        for sequence in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                message = await js.get_msg(stream, sequence)
            except NotFoundError:  # removed by a limit
                continue
            stored.append(Stored(message.seq, message.subject, (message.headers or {}).get("Nats-Msg-Id", ""),
                                 message.data or b""))
        return stored
    finally:
        await client.close()


@pytest.fixture
def nats_server(tmp_path: Path):
    require_nats()
    folder = tmp_path / "nats"
    folder.mkdir()
    server = NatsServer(folder)
    server.start()
    yield server
    server.stop()
