"""Reload without restart: SIGHUP re-reads the config. Added sources start, removed ones
stop and give back their threads and fds, changed ones restart, untouched ones never miss a frame; a
model change swaps the detector under the same publisher; an invalid config is refused, counted, and
the old one keeps running; systemd hears RELOADING=1 then READY=1."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from streamd.publish.subscriber import Subscriber
from tests.support import free_port, http_get, wait_for_http, write_misfit_model, write_tiny_yolox_model

DEADLINE_SECONDS = 60.0
STEADY_FPS = 5


def source_table(source_id: str, seed: int = 0, fps: int = STEADY_FPS) -> str:
    return (f'[[sources]]\nid = "{source_id}"\nkind = "synthetic"\nfps = {fps}\nwidth = 96\nheight = 64\n'
            f"seed = {seed}\n")


def config_text(sources: list[str], model: Path, publish_port: int, metrics_port: int, extra: str = "") -> str:
    return ("".join(sources) + f'[model]\npath = "{model}"\n'
            f'[publish]\nendpoint = "tcp://127.0.0.1:{publish_port}"\nsend_hwm = 10000\n'
            f'[metrics]\nbind = "127.0.0.1:{metrics_port}"\n' + extra)


class Reloadable:
    """A daemon subprocess, its config file, a subscriber on it, and what the subscriber received."""

    def __init__(self, daemon_factory, tmp_path: Path, sources: list[str], model: Path,
                 env: dict[str, str] | None = None) -> None:
        self.publish_port, self.metrics_port = free_port(), free_port()
        self.model = model
        self.daemon = daemon_factory(config_text(sources, model, self.publish_port, self.metrics_port), env=env,
                                     name="reload")
        self.config_path = tmp_path / "reload.toml"
        self.subscriber = Subscriber(f"tcp://127.0.0.1:{self.publish_port}")
        self.messages: list[dict] = []
        wait_for_http(f"http://127.0.0.1:{self.metrics_port}/healthz", DEADLINE_SECONDS)

    def receive_until(self, predicate, timeout: float = DEADLINE_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, self.daemon.log()
            message = self.subscriber.receive(0.2)
            if message is not None:
                self.messages.append(message)

    def received_after(self, source_id: str, count: int, since: int = 0) -> bool:
        return sum(m["source"] == source_id for m in self.messages[since:]) >= count

    def reload(self, text: str) -> int:
        """Write the new config, SIGHUP, wait for the daemon's answer; the count of messages before it."""
        before = self.daemon.log().count("reload ")
        self.config_path.write_text(text)
        mark = len(self.messages)
        self.daemon.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + DEADLINE_SECONDS
        while self.daemon.log().count("reload ") <= before:
            assert time.monotonic() < deadline and self.daemon.process.poll() is None, self.daemon.log()
            message = self.subscriber.receive(0.1)
            if message is not None:
                self.messages.append(message)
        return mark

    def indices(self, source_id: str, since: int = 0) -> list[int]:
        return [m["frame_index"] for m in self.messages[since:] if m["source"] == source_id]

    def metric(self, name: str) -> float:
        _, body = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        match = re.search(rf"^{re.escape(name)} (\S+)$", body, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    def close(self) -> None:
        self.subscriber.close()


def process_resources(pid: int) -> tuple[int, int]:
    return len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))


def settle_resources(pid: int, expected: tuple[int, int], timeout: float = 30.0) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while (now := process_resources(pid)) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return now


@pytest.fixture
def other_model(tmp_path: Path) -> Path:
    """Finds one object of class "x" (its own names: x, y, z) on any frame."""
    path = write_tiny_yolox_model(tmp_path / "other.onnx", planted={0: (0.5, 0.5, 0.5, 0.5, 0.8, 0)})
    (tmp_path / "other.names").write_text("x\ny\nz\n")
    return path


def test_sources_added_removed_changed_and_untouched_without_a_gap(daemon_factory, tmp_path: Path,
                                                                    tiny_model: Path) -> None:
    run = Reloadable(daemon_factory, tmp_path, [source_table("steady"), source_table("leaving"),
                                                source_table("changing", seed=0)], tiny_model)
    try:
        run.receive_until(lambda: all(run.received_after(s, 5) for s in ("steady", "leaving", "changing")))
        pid = run.daemon.process.pid
        resources_before = process_resources(pid)
        mark = run.reload(config_text([source_table("steady"), source_table("changing", seed=1),
                                       source_table("joining")], tiny_model, run.publish_port, run.metrics_port))
        assert "reload applied" in run.daemon.log(), run.daemon.log()
        run.receive_until(lambda: run.received_after("joining", 5, mark) and run.received_after("steady", 10, mark))
        steady = run.indices("steady")
        assert steady == list(range(steady[0], steady[0] + len(steady))), "steady lost frames across the reload"
        # Everything after the new pipeline's first message: "joining" from frame 0, "changing"
        # started over, nothing more of "leaving" (what it had in flight was published before).
        swapped = next(i for i, m in enumerate(run.messages) if m["source"] == "joining")
        # (A first frame may be superseded by the second before the pipeline takes it on a loaded machine.)
        assert run.indices("joining", swapped)[0] <= 2
        changing = run.indices("changing", swapped)
        assert changing and changing[0] <= 2 and changing == list(range(changing[0], changing[0] + len(changing)))
        assert not run.indices("leaving", swapped)
        # Same number of sources as before: its threads and fds are given back.
        assert settle_resources(pid, resources_before) == resources_before
        assert run.metric('streamd_config_reloads_total{result="applied"}') == 1.0
        line = next(line for line in run.daemon.log().splitlines() if "reload applied" in line)
        assert "added joining" in line and "removed leaving" in line and "restarted changing" in line
    finally:
        run.close()


def test_a_model_change_swaps_the_detector_under_the_same_publisher(daemon_factory, tmp_path: Path,
                                                                    tiny_model: Path, other_model: Path) -> None:
    run = Reloadable(daemon_factory, tmp_path, [source_table("steady")], tiny_model)
    try:
        run.receive_until(lambda: run.received_after("steady", 5))
        assert {d["label"] for d in run.messages[-1]["detections"]} == {"a", "b", "c"}
        mark = run.reload(config_text([source_table("steady")], other_model, run.publish_port, run.metrics_port))
        run.receive_until(lambda: run.received_after("steady", 10, mark))
        assert "model swapped" in run.daemon.log()
        assert [d["label"] for d in run.messages[-1]["detections"]] == ["x"]
        assert run.messages[-1]["model"] == "other"
        # The same subscriber connection throughout, no message missed, no frame lost.
        sequences = [m["sequence"] for m in run.messages]
        assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
        steady = run.indices("steady")
        assert steady == list(range(steady[0], steady[0] + len(steady)))
    finally:
        run.close()


def test_an_invalid_config_is_refused_and_the_old_one_keeps_running(daemon_factory, tmp_path: Path,
                                                                    tiny_model: Path) -> None:
    run = Reloadable(daemon_factory, tmp_path, [source_table("steady")], tiny_model)
    try:
        run.receive_until(lambda: run.received_after("steady", 3))
        good = config_text([source_table("steady")], tiny_model, run.publish_port, run.metrics_port)
        mark = run.reload(good.replace('kind = "synthetic"', 'kind = "synthetic"\ncolour = "red"'))
        refused = [line for line in run.daemon.log().splitlines() if "reload refused" in line]
        assert len(refused) == 1 and "config key 'sources[0].colour'" in refused[0], run.daemon.log()
        run.receive_until(lambda: run.received_after("steady", 5, mark))
        mark = run.reload(good.replace(f'path = "{tiny_model}"', f'path = "{tmp_path / "nowhere.onnx"}"'))
        run.receive_until(lambda: run.received_after("steady", 5, mark))
        assert run.metric('streamd_config_reloads_total{result="refused"}') == 2.0
        assert run.metric('streamd_config_reloads_total{result="applied"}') == 0.0
        steady = run.indices("steady")
        assert steady == list(range(steady[0], steady[0] + len(steady)))
        assert run.daemon.process.poll() is None
    finally:
        run.close()


def test_a_model_that_cannot_load_is_refused(daemon_factory, tmp_path: Path, tiny_model: Path) -> None:
    write_misfit_model(tmp_path / "misfit.onnx")
    (tmp_path / "misfit.names").write_text("a\n")
    run = Reloadable(daemon_factory, tmp_path, [source_table("steady")], tiny_model)
    try:
        run.receive_until(lambda: run.received_after("steady", 3))
        mark = run.reload(config_text([source_table("steady")], tmp_path / "misfit.onnx", run.publish_port,
                                      run.metrics_port))
        refused = [line for line in run.daemon.log().splitlines() if "reload refused" in line]
        assert len(refused) == 1 and "fit no YOLOX layout" in refused[0], run.daemon.log()
        run.receive_until(lambda: run.received_after("steady", 5, mark))
        assert {d["label"] for d in run.messages[-1]["detections"]} == {"a", "b", "c"}  # the old model
    finally:
        run.close()


def test_systemd_hears_reloading_then_ready(daemon_factory, tmp_path: Path, tiny_model: Path) -> None:
    socket_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(socket_path))
        listener.settimeout(DEADLINE_SECONDS)
        run = Reloadable(daemon_factory, tmp_path, [source_table("steady")], tiny_model,
                         env={"NOTIFY_SOCKET": str(socket_path)})
        try:
            assert listener.recv(4096).decode().startswith("READY=1")
            run.reload(config_text([source_table("steady"), source_table("joining")], tiny_model,
                                   run.publish_port, run.metrics_port))
            reloading = listener.recv(4096).decode()
            assert reloading.startswith("RELOADING=1") and "MONOTONIC_USEC=" in reloading
            assert listener.recv(4096).decode().startswith("READY=1")
        finally:
            run.close()


def test_a_removed_source_gives_back_its_pinned_buffers(tmp_path: Path, tiny_model: Path) -> None:
    """The GPU path's pinned-frame pool, with a counting allocator standing in for cudaHostAlloc."""
    import dataclasses  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    from streamd.config import parse_config  # noqa: PLC0415
    from streamd.daemon.reload import Reloader  # noqa: PLC0415
    from streamd.daemon.service import Service  # noqa: PLC0415

    live: set[int] = set()

    def allocate(shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, object]:
        buffer = np.empty(shape, dtype)
        live.add(id(buffer))
        return buffer, lambda: live.discard(id(buffer))

    def config(*source_ids: str):
        parsed = parse_config({"sources": [{"id": i, "kind": "synthetic", "fps": 20, "width": 64, "height": 48}
                                           for i in source_ids],
                               "model": {"path": str(tiny_model)}, "publish": {"endpoint": "tcp://127.0.0.1:*"},
                               "metrics": {"enabled": False}})
        return dataclasses.replace(parsed, path=str(tmp_path / "reload.toml"))

    wanted = {"config": config("steady")}
    service = Service(wanted["config"])
    service.start_detector()
    service.frame_allocator = allocate  # what the GPU detector gives; the CPU one gives None
    service.start_sources()
    reloader = Reloader(service, loader=lambda _path: wanted["config"])
    try:
        wanted["config"] = config("steady", "pooled")
        assert reloader.reload()
        pooled = next(s for s in service.sources if s.source_id == "pooled")
        deadline = time.monotonic() + DEADLINE_SECONDS
        while pooled.frames_delivered < 5:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert live and len(service.frame_pools) == 1
        wanted["config"] = config("steady")
        assert reloader.reload()
        assert not pooled.alive and service.frame_pools == [] and not live  # every buffer freed
    finally:
        service.stop()


def test_fifty_detector_swaps_cost_the_untouched_source_no_frame(daemon_factory, tmp_path: Path, tiny_model: Path,
                                                                 other_model: Path) -> None:
    """Each swap builds the new detector while the old one runs, then hands over: the untouched
    source's frames wait in its slot meanwhile (up to reload.SWAP_HOLD_SECONDS) instead of being
    superseded, so no frame_index is lost, and the daemon says so (no "superseded during the swap")."""
    fps = 10  # a frame every 100 ms
    run = Reloadable(daemon_factory, tmp_path, [source_table("steady", fps=fps)], tiny_model)
    try:
        run.receive_until(lambda: run.received_after("steady", 10))
        for swap in range(50):
            model = other_model if swap % 2 == 0 else tiny_model
            mark = run.reload(config_text([source_table("steady", fps=fps)], model, run.publish_port,
                                          run.metrics_port))
            run.receive_until(lambda mark=mark: run.received_after("steady", 2, mark))
        # Counted once the swap is done (building a detector can take over a second on a busy machine).
        run.receive_until(lambda: run.metric('streamd_config_reloads_total{result="applied"}') == 50.0)
        settled = len(run.messages)  # the last reload has been applied: what comes now is the last model's
        run.receive_until(lambda: run.received_after("steady", 10, settled))
        log = run.daemon.log()
        assert log.count("model swapped") == 50, log
        assert run.metric('streamd_config_reloads_total{result="applied"}') == 50.0
        steady = run.indices("steady")
        gaps = [(a, b) for a, b in zip(steady, steady[1:]) if b != a + 1]
        superseded = run.metric('streamd_frames_dropped_total{reason="superseded",source="steady"}')
        print(f"50 swaps: {len(steady)} frames of the untouched source, gaps {gaps}, superseded {superseded:g}, "
              f"swaps that superseded a frame {log.count('superseded during the swap')}")
        assert "superseded during the swap" not in log
        assert not gaps, f"{gaps}; superseded {superseded:g} (none during a swap)"
        assert run.messages[-1]["model"] == "tiny"
        sequences = [m["sequence"] for m in run.messages]
        assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    finally:
        run.close()
