"""A real Mosquitto broker for the sink tests, on a free port, stopped and started again at will; and a
paho subscriber that records what arrives."""

from __future__ import annotations

import getpass
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support import free_port, skip_unless_required

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def require_mqtt() -> None:
    if MOSQUITTO is None:
        skip_unless_required("mqtt", "mosquitto is not installed (Debian package mosquitto)")
    try:
        import paho.mqtt.client  # noqa: F401, PLC0415
    except ImportError:
        skip_unless_required("mqtt", "paho-mqtt is not installed (pip install 'streamd[mqtt]')")


class Broker:
    """Mosquitto on 127.0.0.1:``port``. Persistence on: a subscriber's session (its QoS 1 subscription and
    the messages queued for it) outlives a stop and start, as on a production broker."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.config = folder / "mosquitto.conf"
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                               f"persistence_location {folder}/\nmax_queued_messages 100000\n"
                               "max_inflight_messages 100\n"
                               # Started as root, mosquitto becomes this user (it reads and writes in folder).
                               f"user {getpass.getuser()}\n")
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.folder / f"mosquitto{self.starts}.log", "wb")  # noqa: SIM115 (kept by the process)
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        import socket  # noqa: PLC0415

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start: {(self.folder / f'mosquitto{self.starts}.log').read_text()}")

    def stop(self, signal_number: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal_number)
            self.process.wait(10)


class Recorder:
    """A paho client subscribed to ``topics`` (QoS 1, a persistent session), recording (topic, payload,
    retained) in arrival order; it reconnects by itself after the broker comes back."""

    def __init__(self, port: int, topics: list[str], client_id: str = "recorder") -> None:
        import paho.mqtt.client as mqtt  # noqa: PLC0415

        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.reconnect_delay_set(0.1, 0.5)

        def on_connect(client, _userdata, _flags, reason, _properties) -> None:
            if not reason.is_failure:
                client.subscribe([(topic, 1) for topic in topics])

        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *_args: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise RuntimeError("the recorder did not subscribe")

    def _on_message(self, _client, _userdata, message) -> None:
        with self.lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [payload for t, payload, _ in self.messages if t == topic]

    def wait_for(self, condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.05)
        return condition()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def broker(tmp_path: Path):
    require_mqtt()
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Broker(folder)
    broker.start()
    yield broker
    broker.stop()
