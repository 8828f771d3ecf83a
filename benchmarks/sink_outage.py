#!/usr/bin/env python3
"""A broker killed mid-stream for ``--outage`` seconds (30 by default), then started again: what a daemon's
MQTT or NATS sink (``--kind``) loses, against what it counts.

For each buffer size in ``--buffers``: the broker, a ZeroMQ subscriber recording every message the daemon
published, and a daemon with ``--sources`` synthetic sources at ``--fps`` (their own pace) and a sink of that
kind carrying events and detections. After ``--before`` seconds the broker gets SIGKILL; ``--outage`` seconds
later it starts again on the same port; the daemon runs ``--after`` seconds more and stops at the end of its
frames.

- ``mqtt``: a mosquitto (persistence saved every second, so the subscriber's session survives SIGKILL) and a
  QoS 1 subscriber recording every message on ``streamd/bench/#``.
- ``nats``: a ``nats-server`` with JetStream, started again with the same store folder; the sink creates the
  stream. Once the daemon has stopped, every message the stream holds is read by stream sequence.

Then:

- published: messages on ZeroMQ (each is also offered to the sink, in the same order);
- arrived: distinct messages at the MQTT subscriber (QoS 1 is at least once: repeats counted apart), or
  distinct messages stored in the stream (``arrived_repeats``: stored more than once; the stream's sequence
  must have no gap and each ``Nats-Msg-Id`` must be stored once);
- sent and dropped: the sink's totals line; ``lost_uncounted`` = published - arrived - dropped (0 is the
  acceptance); ``missing_one_run``: the missing messages are one run of the published order;
- reconnect: seconds from the broker's restart to the first message arriving (MQTT) or stored (NATS, by the
  stream's own time of each message) after it;
- frame age (capture to publish) p50/p99 before, during and after the outage.

    python benchmarks/sink_outage.py --json benchmarks/results/cpu-2core_mqtt-outage-30s.json
    python benchmarks/sink_outage.py --kind nats --json benchmarks/results/cpu-2core_nats-outage-30s.json
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from record import provenance  # noqa: E402

from streamd.publish.subscriber import Subscriber  # noqa: E402

TOTALS = re.compile(r"sink bench: stopped; (\d+) message\(s\) sent, (\d+) dropped")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    process: subprocess.Popen | None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


class MqttBroker(Broker):
    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.config = folder / "mosquitto.conf"
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                               f"persistence_location {folder}/\nautosave_interval 1\n"
                               f"max_queued_messages 1000000\nuser {getpass.getuser()}\n")
        self.process = None

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen([binary, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")


class NatsBroker(Broker):
    """nats-server with JetStream, its store in ``folder``/store: kept across the kill, as a server's disk is."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.url = f"nats://127.0.0.1:{self.port}"
        self.config = folder / "nats.conf"
        store = folder / "store"
        self.config.write_text(f"listen: 127.0.0.1:{self.port}\njetstream {{\n  store_dir: \"{store}\"\n}}\n")
        self.process = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        with open(self.folder / f"nats{self.starts}.log", "wb") as log:
            self.process = subprocess.Popen([binary, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2) as connection:
                    if connection.recv(4).startswith(b"INFO"):  # the server speaks: JetStream is set up
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nats-server did not start")


def message_key(kind: str, document: dict) -> tuple:
    """What names a message across ZeroMQ and the broker: ("e", source, source_sequence) for an events
    message, ("d", source, frame_index) for a detections one."""
    return (("e", document["source"], document["source_sequence"]) if kind == "events"
            else ("d", document["source"], document["frame_index"]))


class Recorder:
    """QoS 1, a persistent session: (key, arrival time) of each message, repeats included."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt  # noqa: PLC0415

        self.arrivals: list[tuple[tuple, float]] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="outage-recorder", clean_session=False)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, _u, _f, reason, _p: None if reason.is_failure else c.subscribe(
            "streamd/bench/#", 1)
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the recorder did not subscribe")

    def _on_message(self, _client, _userdata, message) -> None:
        topic = message.topic.split("/")
        if topic[-1] not in ("events", "detections"):
            return
        key = message_key(topic[-1], json.loads(message.payload))
        with self.lock:
            self.arrivals.append((key, time.time()))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def read_stream(url: str, stream: str = "STREAMD") -> dict:
    """Every message the stream holds, by stream sequence: (key, stored time) of each, the sequences and the
    message ids."""
    return asyncio.run(_read_stream(url, stream))


async def _read_stream(url: str, stream: str) -> dict:
    import nats  # noqa: PLC0415
    from nats.js.errors import NotFoundError  # noqa: PLC0415

    client = await nats.connect(url, allow_reconnect=False)
    try:
        js = client.jetstream(timeout=10)
        info = await js.stream_info(stream)
        arrivals, sequences, message_ids = [], [], []
        for sequence in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                message = await js.get_msg(stream, sequence)
            except NotFoundError:  # a gap: removed, which no limit of this stream should do
                continue
            sequences.append(message.seq)
            message_ids.append((message.headers or {}).get("Nats-Msg-Id", ""))
            arrivals.append((message_key(message.subject.rsplit(".", 1)[1], json.loads(message.data)),
                             message.time.timestamp()))
        return {"arrivals": arrivals, "sequences": sequences, "message_ids": message_ids,
                "first_seq": info.state.first_seq, "last_seq": info.state.last_seq}
    finally:
        await client.close()


def sink_text(kind: str, broker_port: int, buffer_messages: int) -> str:
    where = (f"port = {broker_port}\nqos = 1" if kind == "mqtt" else f'servers = ["nats://127.0.0.1:{broker_port}"]')
    return f"""
[[sinks]]
kind = "{kind}"
name = "bench"
{where}
node = "bench"
carries = ["events", "detections"]
buffer_messages = {buffer_messages}
keepalive_seconds = 5
"""


def config_text(args: argparse.Namespace, publish_port: int, broker_port: int, buffer_messages: int) -> str:
    frames = int(args.fps * (args.before + args.outage + args.after))
    sources = "".join(f"""
[[sources]]
id = "cam{i}"
kind = "synthetic"
seed = {i}
pace = "native"
fps = {args.fps}
max_frames = {frames}

[[sources.lines]]
name = "line"
points = [[0, 240], [640, 240]]
""" for i in range(args.sources))
    return f"""{sources}
[model]
path = "builtin:synthetic-shapes"

[publish]
endpoint = "tcp://127.0.0.1:{publish_port}"
send_hwm = 1000000
wait_for_subscriber_seconds = 30

[metrics]
enabled = false

[daemon]
status_interval_seconds = 0
workers = 1
{sink_text(args.kind, broker_port, buffer_messages)}"""


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"frames": 0}
    array = np.array(values) * 1000
    return {"frames": len(values), "p50_ms": round(float(np.percentile(array, 50)), 1),
            "p99_ms": round(float(np.percentile(array, 99)), 1)}


def in_order_per_source(published: list[tuple], stored: list[tuple]) -> bool:
    """Each source's messages of each kind are stored in the order they were published."""
    position = {key: index for index, key in enumerate(published)}
    last: dict[tuple, int] = {}
    for key in stored:
        stream_of = key[:2]
        if key not in position or position[key] < last.get(stream_of, -1):
            return False
        last[stream_of] = position[key]
    return True


def ages_at(published: list[tuple], missing: list[int], ages: list[tuple[float, float]]) -> float:
    """The publish time of the first missing message (of the nearest detections message at or before it)."""
    detections_before = sum(1 for key in published[:missing[0] + 1] if key[0] == "d")
    return ages[max(0, detections_before - 1)][0]


def run(args: argparse.Namespace, buffer_messages: int, folder: Path) -> dict:
    folder.mkdir()
    broker = MqttBroker(folder) if args.kind == "mqtt" else NatsBroker(folder)
    broker.start()
    recorder = Recorder(broker.port) if args.kind == "mqtt" else None
    stream: dict = {}
    publish_port = free_port()
    config = folder / "daemon.toml"
    config.write_text(config_text(args, publish_port, broker.port, buffer_messages))
    log_path = folder / "daemon.log"
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "streamd", "run", "--config", str(config)], stdout=log,
                                  stderr=subprocess.STDOUT)
    published: list[tuple] = []
    ages: list[tuple[float, float]] = []  # (publish time, frame age)
    killed_at = restarted_at = 0.0
    try:
        topics = tuple(f"{prefix}cam{i}" for i in range(args.sources) for prefix in ("", "events/"))
        with Subscriber(f"tcp://127.0.0.1:{publish_port}", topics) as subscriber:
            first = 0.0
            deadline = time.monotonic() + args.before + args.outage + args.after + 120
            while time.monotonic() < deadline:
                message = subscriber.receive(0.2)
                if message is None:
                    if daemon.poll() is not None:
                        break
                elif message.get("schema", "").startswith("streamd.events"):
                    published.append(("e", message["source"], message["source_sequence"]))
                else:
                    published.append(("d", message["source"], message["frame_index"]))
                    ages.append((message["publish_time"], message["publish_time"] - message["capture_time"]))
                first = first or time.monotonic()
                if not first:
                    continue
                elapsed = time.monotonic() - first
                if not killed_at and elapsed >= args.before:
                    broker.kill()
                    killed_at = time.time()
                elif killed_at and not restarted_at and elapsed >= args.before + args.outage:
                    broker.start()
                    restarted_at = time.time()
        status = daemon.wait(60)
        if recorder is not None:
            # Quiet for 3 s: everything the broker had for the recorder has arrived.
            count = -1
            while count != len(recorder.arrivals):
                count = len(recorder.arrivals)
                time.sleep(3)
        else:
            stream = read_stream(broker.url)  # the daemon has stopped: its sink has sent all it will
    finally:
        if daemon.poll() is None:
            daemon.kill()
        if recorder is not None:
            recorder.close()
        broker.kill()
    arrivals = recorder.arrivals if recorder is not None else stream["arrivals"]
    log_text = log_path.read_text(errors="replace")
    totals = TOTALS.search(log_text)
    sent, dropped = (int(totals[1]), int(totals[2])) if totals else (None, None)
    arrived = {key for key, _ in arrivals}
    missing = [index for index, key in enumerate(published) if key not in arrived]
    after_restart = [at for _, at in arrivals if at >= restarted_at]
    checks = {}
    if stream:
        # Exactly once, nothing removed: one stored message per sequence number and per message id.
        checks = {"stored": len(stream["sequences"]),
                  "stream_sequence_without_gaps": stream["sequences"] == list(range(stream["first_seq"],
                                                                                    stream["last_seq"] + 1)),
                  "message_ids_distinct": len(set(stream["message_ids"])),
                  "order_per_source_kept": in_order_per_source(published, [key for key, _ in arrivals])}
    return {
        "buffer_messages": buffer_messages, "daemon_exit_status": status,
        "published": len(published), "arrived_distinct": len(arrived & set(published)),
        "arrived_repeats": len(arrivals) - len(arrived), **checks, "sent": sent, "dropped": dropped,
        "missing": len(missing), "lost_uncounted": None if dropped is None else len(missing) - dropped,
        # The buffer drops its oldest message: what is missing is one run of the published order.
        "missing_one_run": missing == list(range(missing[0], missing[-1] + 1)) if missing else True,
        "first_missing_seconds_after_kill": round(ages_at(published, missing, ages) - killed_at, 2)
        if missing else None,
        "outage_seconds": round(restarted_at - killed_at, 2),
        "reconnect_seconds_after_restart": round(min(after_restart) - restarted_at, 2) if after_restart else None,
        "frame_age": {"before": percentiles([a for t, a in ages if t < killed_at]),
                      "outage": percentiles([a for t, a in ages if killed_at <= t < restarted_at]),
                      "after": percentiles([a for t, a in ages if t >= restarted_at])},
        "sink_log_lines": [line for line in log_text.splitlines() if "sink bench" in line][:6],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=("mqtt", "nats"), default="mqtt", help="the sink and broker")
    parser.add_argument("--sources", type=int, default=4)
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--before", type=float, default=10.0)
    parser.add_argument("--outage", type=float, default=30.0)
    parser.add_argument("--after", type=float, default=45.0, help="seconds of frames after the restart")
    parser.add_argument("--buffers", default="10000,500", help="buffer_messages of each run")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sink_outage_"))
    runs = []
    for buffer_messages in (int(b) for b in args.buffers.split(",")):
        runs.append(run(args, buffer_messages, folder / f"buffer{buffer_messages}"))
        print(json.dumps({k: v for k, v in runs[-1].items() if k != "sink_log_lines"}))
    delivery = {"qos": 1} if args.kind == "mqtt" else {"stream_storage": "file"}
    result = {**provenance(), "sink": args.kind, "sources": args.sources, "fps": args.fps,
              "carries": ["events", "detections"], **delivery, "outage_seconds": args.outage,
              "broker_stop": "SIGKILL", "runs": runs}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(r["lost_uncounted"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
