"""One `streamd run` with several worker processes, end to end: one endpoint, one scrape, a worker
SIGKILLed and restarted while the others run on without a gap, reload across workers, SIGTERM,
exit statuses, and no worker outliving its supervisor."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest

from streamd.publish.subscriber import Subscriber
from streamd.supervisor.workers import RESTART_RESET_AFTER_SECONDS
from tests.support import free_port, http_get, write_tiny_yolox_model

DEADLINE_SECONDS = 60.0
FPS = 5
STOP_LIMIT_SECONDS = 5.0


def source_table(source_id: str, extra: str = "") -> str:
    return f'[[sources]]\nid = "{source_id}"\nkind = "synthetic"\nfps = {FPS}\nwidth = 96\nheight = 64\n{extra}'


class Service:
    """A supervisor subprocess with ``workers`` workers, a subscriber on its one endpoint."""

    def __init__(self, daemon_factory, tmp_path: Path, sources: list[str], workers: int = 2,
                 extra: str = "") -> None:
        self.model = write_tiny_yolox_model(tmp_path / "tiny.onnx")
        self.publish_port, self.metrics_port = free_port(), free_port()
        self.workers = workers
        self.extra = extra
        self.daemon = daemon_factory(self.config(sources), name="service")
        self.config_path = tmp_path / "service.toml"
        self.subscriber = Subscriber(f"tcp://127.0.0.1:{self.publish_port}")
        self.messages: list[dict] = []

    def config(self, sources: list[str]) -> str:
        return ("".join(sources) + f'[model]\npath = "{self.model}"\nclasses = ["a", "b", "c"]\n'
                f'[publish]\nendpoint = "tcp://127.0.0.1:{self.publish_port}"\nsend_hwm = 10000\n'
                "wait_for_subscriber_seconds = 10\n"
                f'[metrics]\nbind = "127.0.0.1:{self.metrics_port}"\n'
                f"[daemon]\nworkers = {self.workers}\nstatus_interval_seconds = 0\n" + self.extra)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.metrics_port}{path}"

    def wait_ready(self) -> dict:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            try:
                status, body = http_get(self.url("/readyz"), timeout=3.0)
            except OSError:
                status, body = 0, ""
            if status == 200:
                return json.loads(body)
            assert self.daemon.process.poll() is None, self.daemon.log()
            time.sleep(0.2)
        raise AssertionError(f"not ready in {DEADLINE_SECONDS} s:\n{self.daemon.log()}")

    def workers_detail(self) -> dict:
        return json.loads(http_get(self.url("/healthz"))[1])["workers"]

    def receive_until(self, predicate, timeout: float = DEADLINE_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, self.daemon.log()
            message = self.subscriber.receive(0.2)
            if message is not None:
                message["received_monotonic"] = time.monotonic()
                self.messages.append(message)

    def drain(self) -> None:
        """What is still on its way once the service has exited."""
        while (message := self.subscriber.receive(1.0)) is not None:
            self.messages.append(message)

    def count(self, source_id: str, since: int = 0) -> int:
        return sum(m["source"] == source_id for m in self.messages[since:])

    def frame_indices(self, source_id: str, since: int = 0) -> list[int]:
        return [m["frame_index"] for m in self.messages[since:] if m["source"] == source_id]

    def close(self) -> None:
        self.subscriber.close()


def consecutive(values: list[int]) -> bool:
    return all(b == a + 1 for a, b in zip(values, values[1:]))


def worker_pids(runtime_dir: str, standby: bool = False) -> list[int]:
    """Worker processes of the service (``standby``: its standby processes instead; None: both)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if runtime_dir.encode() in cmdline and b"--worker-spec" in cmdline and (
                    standby is None or (b"--standby" in cmdline) == standby):
                pids.append(int(entry.name))
    return pids


def runtime_dir_of(log: str) -> str:
    match = re.search(r"\(runtime directory (/\S+)\)", log)
    assert match, log
    return match.group(1)


@pytest.fixture
def four_sources(daemon_factory, tmp_path: Path):
    service = Service(daemon_factory, tmp_path, [source_table(s) for s in "abcd"])
    yield service
    service.close()


def test_one_endpoint_one_scrape_every_source(four_sources: Service) -> None:
    service = four_sources
    ready = service.wait_ready()
    assert set(ready["sources"]) == set("abcd")
    assert {w["state"] for w in ready["workers"].values()} == {"up"}
    assert sorted(len(w["sources"]) for w in ready["workers"].values()) == [2, 2]
    service.receive_until(lambda: all(service.count(s) >= 10 for s in "abcd"))
    # One numbering over the service, as one process would number its messages: no gap, no repeat.
    assert consecutive([m["sequence"] for m in service.messages])
    for source_id in "abcd":
        assert consecutive(service.frame_indices(source_id)), source_id
    status, text = http_get(service.url("/metrics"))
    assert status == 200
    for source_id in "abcd":
        assert re.search(rf'^streamd_frames_processed_total{{source="{source_id}"}} [1-9]', text, re.M), source_id
    assert re.search(r'^streamd_worker_up\{worker="1"\} 1\.0$', text, re.M)
    # Series of no one source say which worker they come from.
    assert re.search(r'^streamd_config_reloads_total\{result="applied",worker="0"\} 0\.0$', text, re.M)
    assert re.search(r'^streamd_build_info\{[^}]*worker="1"', text, re.M)
    assert re.search(r"^streamd_messages_published_total [1-9]", text, re.M)  # the public endpoint's count


def test_a_killed_worker_comes_back_and_the_others_run_on_without_a_gap(four_sources: Service) -> None:
    service = four_sources
    workers = service.wait_ready()["workers"]
    service.receive_until(lambda: all(service.count(s) >= 3 for s in "abcd"))
    for round_number in range(2):
        victim, survivor = workers["0"], workers["1"]
        start = len(service.messages)
        killed_at = time.monotonic()
        os.kill(victim["pid"], signal.SIGKILL)
        # Its sources publish again; meanwhile the other worker's never miss a frame.
        service.receive_until(lambda start=start, ids=victim["sources"]: all(service.count(s, start) >= 3 for s in ids))
        back = min(m["received_monotonic"] for m in service.messages[start:]
                   if m["source"] in victim["sources"] and m["received_monotonic"] > killed_at)
        service.receive_until(lambda start=start, ids=survivor["sources"]: all(service.count(s, start) >= 5
                                                                               for s in ids))
        for source_id in survivor["sources"]:
            assert consecutive(service.frame_indices(source_id, start - 20 if start > 20 else 0)), source_id
        workers = service.workers_detail()
        assert workers["0"]["restarts"] == round_number + 1
        assert workers["0"]["pid"] != victim["pid"]
        assert back - killed_at < DEADLINE_SECONDS
    text = http_get(service.url("/metrics"))[1]
    assert re.search(r'^streamd_worker_restarts_total\{worker="0"\} 2\.0$', text, re.M)
    assert "worker 0 (pid" in service.daemon.log() and "died (killed by SIGKILL)" in service.daemon.log()


def test_a_worker_that_ran_a_while_is_replaced_by_the_standby(four_sources: Service) -> None:
    """After 20 s up, a dead worker's share goes to the standby process (model already loaded) at once;
    a new standby is started for the next time."""
    service = four_sources
    service.wait_ready()
    runtime_dir = runtime_dir_of(service.daemon.log())
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not worker_pids(runtime_dir, standby=True):
        assert time.monotonic() < deadline, service.daemon.log()
        time.sleep(0.2)
    (standby_pid,) = worker_pids(runtime_dir, standby=True)
    time.sleep(RESTART_RESET_AFTER_SECONDS + 1)
    victim = service.workers_detail()["1"]
    start = len(service.messages)
    os.kill(victim["pid"], signal.SIGKILL)
    while service.workers_detail()["1"]["pid"] == victim["pid"]:  # until the supervisor has seen it die
        assert time.monotonic() < deadline + 30, service.daemon.log()
        time.sleep(0.1)
    assert service.workers_detail()["1"]["pid"] == standby_pid
    start = len(service.messages)
    service.receive_until(lambda: all(service.count(s, start) >= 3 for s in victim["sources"]))
    assert f"the standby (pid {standby_pid}) takes over" in service.daemon.log()
    # A new standby for the next time (the one that took over keeps its command line).
    while not set(worker_pids(runtime_dir, standby=True)) - {standby_pid}:
        assert time.monotonic() < deadline + 30, service.daemon.log()
        time.sleep(0.2)


def test_reload_reaches_only_the_workers_whose_share_changed(four_sources: Service) -> None:
    service = four_sources
    workers = service.wait_ready()["workers"]
    service.receive_until(lambda: all(service.count(s) >= 3 for s in "abcd"))
    changing = next(w for w in workers.values() if "d" in w["sources"])
    untouched = next(w for w in workers.values() if "d" not in w["sources"])
    kept = [s for s in "abc"]
    service.config_path.write_text(service.config([source_table(s) for s in kept] + [source_table("e")]))
    start = len(service.messages)
    os.kill(service.daemon.process.pid, signal.SIGHUP)
    service.receive_until(lambda: service.count("e", start) >= 5
                          and all(service.count(s, start) >= 5 for s in untouched["sources"]))
    for source_id in untouched["sources"]:
        assert consecutive(service.frame_indices(source_id, max(0, start - 10))), source_id
    after = service.workers_detail()
    by_pid = {w["pid"]: w for w in after.values()}
    assert "e" in by_pid[changing["pid"]]["sources"]  # the worker that lost d took e; no process restarted
    assert by_pid[untouched["pid"]]["sources"] == untouched["sources"]
    service.receive_until(lambda: service.count("e", start) >= 8)
    late = len(service.messages) - 5
    assert service.count("d", late) == 0
    assert consecutive([m["sequence"] for m in service.messages[start:]])


def test_sigterm_stops_every_worker_within_five_seconds(four_sources: Service) -> None:
    service = four_sources
    service.wait_ready()
    runtime_dir = runtime_dir_of(service.daemon.log())
    assert len(worker_pids(runtime_dir)) == 2
    status, seconds = service.daemon.terminate()
    assert status == 0, service.daemon.log()
    assert seconds < STOP_LIMIT_SECONDS, service.daemon.log()
    assert worker_pids(runtime_dir, standby=None) == []
    assert not Path(runtime_dir).exists()


def test_workers_end_with_a_supervisor_that_was_killed(four_sources: Service) -> None:
    service = four_sources
    service.wait_ready()
    runtime_dir = runtime_dir_of(service.daemon.log())
    service.daemon.process.kill()
    service.daemon.process.wait(10)
    deadline = time.monotonic() + 15
    while worker_pids(runtime_dir, standby=None) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert worker_pids(runtime_dir, standby=None) == []


def test_finite_sources_end_the_service_with_status_0(daemon_factory, tmp_path: Path) -> None:
    service = Service(daemon_factory, tmp_path, [source_table(s, "max_frames = 15\npace = \"fast\"\n")
                                                  for s in "abc"])
    try:
        service.receive_until(lambda: service.daemon.process.poll() is not None)
        service.drain()
        assert service.daemon.process.returncode == 0, service.daemon.log()
        assert "worker 0 finished" in service.daemon.log() and "worker 1 finished" in service.daemon.log()
        # Nothing lost at either end: every worker waited for the forwarder before its first frame.
        for source_id in "abc":
            assert service.frame_indices(source_id) == list(range(15)), source_id
    finally:
        service.close()


def test_a_worker_that_cannot_load_the_model_fails_the_start_with_status_1(daemon_factory, tmp_path: Path) -> None:
    service = Service(daemon_factory, tmp_path, [source_table(s) for s in "ab"])
    service.daemon.stop()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    service.model = broken
    service.daemon = daemon_factory(service.config([source_table(s) for s in "ab"]), name="broken")
    try:
        assert service.daemon.process.wait(DEADLINE_SECONDS) == 1, service.daemon.log()
        assert "failed to start" in service.daemon.log()
        assert worker_pids(runtime_dir_of(service.daemon.log())) == []
    finally:
        service.close()


def test_a_bad_workers_value_is_a_config_error(daemon_factory, tmp_path: Path) -> None:
    service = Service(daemon_factory, tmp_path, [source_table("a")], extra="")
    service.daemon.stop()
    text = service.config([source_table("a")]).replace("workers = 2", "workers = 0")
    daemon = daemon_factory(text, name="bad")
    try:
        assert daemon.process.wait(30) == 2
        assert "daemon.workers" in daemon.log()
    finally:
        service.close()


def test_per_source_order_holds_under_load(daemon_factory, tmp_path: Path) -> None:
    """Sources read flat out through three workers: each source's frames arrive in order, numbered once."""
    tables = [source_table(s, 'pace = "fast"\nmax_frames = 300\n') for s in "abcdef"]
    service = Service(daemon_factory, tmp_path, tables, workers=3)
    try:
        service.receive_until(lambda: service.daemon.process.poll() is not None, timeout=DEADLINE_SECONDS * 2)
        service.drain()
        assert service.daemon.process.returncode == 0, service.daemon.log()
        per_source = defaultdict(list)
        for message in service.messages:
            per_source[message["source"]].append(message["frame_index"])
        for source_id, indices in per_source.items():
            assert indices == sorted(indices), source_id
        sequences = [m["sequence"] for m in service.messages]
        assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    finally:
        service.close()


def test_one_preview_lists_and_relays_every_workers_sources(daemon_factory, tmp_path: Path) -> None:
    preview_port = free_port()
    service = Service(daemon_factory, tmp_path, [source_table(s) for s in "abc"],
                      extra=f'[preview]\nenabled = true\nbind = "127.0.0.1:{preview_port}"\n')
    try:
        service.wait_ready()
        base = f"http://127.0.0.1:{preview_port}"
        status, body = http_get(f"{base}/sources.json")
        assert status == 200 and {s["source"] for s in json.loads(body)["sources"]} == set("abc")
        status, page = http_get(f"{base}/")
        assert status == 200 and all(f'href="/sources/{s}"' in page for s in "abc")
        import urllib.request

        for source_id in "abc":  # each from whichever worker runs it
            with urllib.request.urlopen(f"{base}/sources/{source_id}/snapshot.jpg", timeout=10) as response:
                assert response.status == 200 and response.headers["Content-Type"] == "image/jpeg"
                assert response.read()[:2] == b"\xff\xd8"
        assert http_get(f"{base}/sources/nope")[0] == 404
    finally:
        service.close()


def test_curve_on_the_one_endpoint_and_its_refusals_in_the_one_scrape(daemon_factory, tmp_path: Path) -> None:
    """CURVE stays on the public side: an authorised subscriber receives every worker's sources, an
    unknown key is refused and counted once, in the supervisor's series (no per-worker copies)."""
    import shutil

    from streamd.publish.curve import create_key_pair
    from tests.publish.test_refusals import refused_client

    authorized = tmp_path / "authorized"
    authorized.mkdir()
    keys = {"authorized": authorized}
    for name in ("server", "alice", "mallory"):
        keys[name], keys[f"{name}_secret"] = create_key_pair(tmp_path / "keys", name)
    shutil.copy(keys["alice"], authorized / "alice.key")
    service = Service(daemon_factory, tmp_path, [source_table(s) for s in "abc"])
    service.daemon.stop()
    service.subscriber.close()
    text = service.config([source_table(s) for s in "abc"]).replace(
        "wait_for_subscriber_seconds = 10\n", f'curve_secret_key = "{keys["server_secret"]}"\n'
        f'curve_authorized_keys = "{keys["authorized"]}"\n')
    service.daemon = daemon_factory(text, name="curve")
    service.subscriber = Subscriber(f"tcp://127.0.0.1:{service.publish_port}", server_key=keys["server"],
                                    client_key=keys["alice_secret"])
    try:
        service.wait_ready()
        service.receive_until(lambda: all(service.count(s) >= 3 for s in "abc"))
        intruder = refused_client(f"tcp://127.0.0.1:{service.publish_port}", keys, "unknown_key")
        try:
            pattern = r'^streamd_publish_auth_refused_total\{reason="unknown_key"\} (\S+)$'
            deadline = time.monotonic() + DEADLINE_SECONDS
            while True:
                found = re.findall(pattern, http_get(service.url("/metrics"))[1], re.M)
                if found and float(found[0]) >= 1:
                    break
                assert time.monotonic() < deadline, service.daemon.log()
                time.sleep(0.2)
            assert len(found) == 1  # the supervisor's series only
            assert intruder.poll(500) == 0
        finally:
            intruder.close(0)
    finally:
        service.close()
