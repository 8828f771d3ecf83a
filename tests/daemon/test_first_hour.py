"""Daemon behaviour a new user meets first, through a real daemon subprocess, real
sockets and HTTP GETs of /metrics: a missing media file is a retried source error while the other
sources publish; every source kind has its last-frame metrics; the periodic status line; no
``_created`` series; no "streamd stopped" for a daemon that never started."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from streamd.config import parse_config
from streamd.daemon.service import Service
from streamd.publish.subscriber import Subscriber
from tests.sources.rtsp_support import write_coded_video
from tests.support import REPO, free_port, http_get

# Generous: a busy 2-core CI machine may take many seconds to start a daemon.
DEADLINE_SECONDS = 60.0


def wait_until(predicate: Callable[[], object], what: str, deadline_seconds: float = DEADLINE_SECONDS) -> object:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {deadline_seconds:g} s waiting for {what}")


def metrics_url(daemon) -> str:
    """The daemon binds metrics on port 0 and logs the port it got."""
    match = wait_until(lambda: re.search(r"metrics on (http://\S+/metrics)", daemon.log()),
                       f"the metrics line in the log:\n{daemon.log()}")
    return match.group(1)


def scrape(url: str) -> dict[str, float]:
    status, text = http_get(url)
    assert status == 200
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_missing_media_file_is_retried_while_another_source_publishes(daemon_factory, tmp_path: Path,
                                                                      tiny_model: Path, tiny_image: Path) -> None:
    missing = tmp_path / "later.png"  # copied in only once the daemon runs
    publish_port = free_port()
    daemon = daemon_factory(f"""
[[sources]]
id = "later"
kind = "image"
url = "{missing}"
loop = true
fps = 10
backoff_initial_seconds = 0.05
backoff_max_seconds = 0.2
[[sources]]
id = "still"
kind = "image"
url = "{tiny_image}"
loop = true
fps = 20
[model]
path = "{tiny_model}"
[publish]
endpoint = "tcp://127.0.0.1:{publish_port}"
[metrics]
bind = "127.0.0.1:0"
""")
    url = metrics_url(daemon)
    with Subscriber(f"tcp://127.0.0.1:{publish_port}") as subscriber:
        message = wait_until(lambda: subscriber.receive(0.5), "a message from the good source")
        assert message["source"] == "still"
    assert daemon.process.poll() is None, daemon.log()  # not exit 2: one bad path takes nothing down
    wait_until(lambda: scrape(url).get('streamd_source_errors_total{kind="open",source="later"}', 0) >= 3,
               "retried opens of the missing file")
    samples = scrape(url)
    assert samples['streamd_source_up{source="later"}'] == 0
    assert samples['streamd_source_up{source="still"}'] == 1
    status, body = http_get(url.replace("/metrics", "/readyz"))
    assert status == 200 and '"still": "streaming"' in body
    assert re.search(r'"later": "(connecting|backing_off)"', body), body
    log_text = daemon.log()
    assert f"file {missing} does not exist" in log_text
    assert "invalid configuration" not in log_text

    missing.write_bytes(tiny_image.read_bytes())  # the file appears: the source recovers by itself
    wait_until(lambda: scrape(url).get('streamd_source_up{source="later"}') == 1, "the late file to stream")
    status, seconds = daemon.terminate(timeout=30)
    assert status == 0, daemon.log()


def test_repeated_open_failures_log_the_first_and_every_tenth(tmp_path: Path, tiny_model: Path, tiny_image: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    config = parse_config({
        "sources": [{"id": "gone", "kind": "file", "url": str(tmp_path / "gone.avi"), "backoff_initial_seconds": 0.01,
                     "backoff_max_seconds": 0.02},
                    {"id": "still", "kind": "image", "url": str(tiny_image), "loop": True, "fps": 20}],
        "model": {"path": str(tiny_model)},
        "publish": {"endpoint": "tcp://127.0.0.1:*"},
        "metrics": {"enabled": False},
    })
    service = Service(config)
    service.start_detector()
    try:
        with caplog.at_level(logging.DEBUG, logger="streamd.sources"):
            service.start_sources()
            wait_until(lambda: (service.registry.get_sample_value(
                "streamd_source_errors_total", {"source": "gone", "kind": "open"}) or 0) >= 25, "25 failed opens")
    finally:
        service.stop()
    gone = next(s for s in service.sources if s.source_id == "gone")
    wait_until(lambda: not gone.alive, "the source's thread to end")  # no failure after the count is read
    failures = service.registry.get_sample_value("streamd_source_errors_total", {"source": "gone", "kind": "open"})
    about_it = [r for r in caplog.records if "gone.avi does not exist" in r.getMessage()]
    warnings = [r for r in about_it if r.levelno == logging.WARNING]
    debug = [r for r in about_it if r.levelno == logging.DEBUG]
    assert len(warnings) == 1 + int(failures) // 10  # the 1st, 10th, 20th, ...
    assert len(warnings) + len(debug) == failures  # every failure is still logged, quietly


def test_last_frame_metrics_exist_for_every_source_kind(daemon_factory, tmp_path: Path, tiny_model: Path,
                                                        tiny_image: Path) -> None:
    video = write_coded_video(tmp_path / "clip.avi", frames=20, fps=10)
    refused = f"rtsp://127.0.0.1:{free_port()}/none"  # nothing listens: the rtsp source never gets a frame
    started = time.time()
    daemon = daemon_factory(f"""
[[sources]]
id = "clip"
kind = "file"
url = "{video}"
loop = true
[[sources]]
id = "still"
kind = "image"
url = "{tiny_image}"
loop = true
[[sources]]
id = "scene"
kind = "synthetic"
[[sources]]
id = "camera"
kind = "rtsp"
url = "{refused}"
open_timeout_seconds = 1.0
[model]
path = "{tiny_model}"
[publish]
endpoint = "tcp://127.0.0.1:{free_port()}"
[metrics]
bind = "127.0.0.1:0"
""")
    url = metrics_url(daemon)
    streaming = ("clip", "still", "scene")
    # .get: the page is served a moment before the sources are declared on it.
    wait_until(lambda: all(scrape(url).get(f'streamd_source_up{{source="{s}"}}') == 1 for s in streaming),
               "file, image and synthetic sources streaming")
    first = scrape(url)
    for source in (*streaming, "camera"):
        assert first[f'streamd_source_last_frame_timestamp_seconds{{source="{source}"}}'] >= started - 1, source
        assert f'streamd_source_seconds_since_last_frame{{source="{source}"}}' in first, source
    # Live sources: the timestamp moves on with new frames.
    wait_until(lambda: all(scrape(url)[f'streamd_source_last_frame_timestamp_seconds{{source="{s}"}}']
                           > first[f'streamd_source_last_frame_timestamp_seconds{{source="{s}"}}'] for s in streaming),
               "newer frames from every live source")
    # The camera never delivered: its age keeps growing from the daemon's start.
    wait_until(lambda: scrape(url)['streamd_source_seconds_since_last_frame{source="camera"}']
               > first['streamd_source_seconds_since_last_frame{source="camera"}'], "the camera's age to grow")
    assert not [name for name in first if "_created" in name]  # noise to a reader: not on the page


def test_status_line_per_source(daemon_factory, tiny_model: Path, tiny_image: Path) -> None:
    daemon = daemon_factory(f"""
[[sources]]
id = "still"
kind = "image"
url = "{tiny_image}"
loop = true
fps = 20
[model]
path = "{tiny_model}"
[publish]
endpoint = "tcp://127.0.0.1:{free_port()}"
[metrics]
enabled = false
[daemon]
status_interval_seconds = 1
""")
    pattern = re.compile(r"INFO streamd\.status: status: source still streaming, (\d+\.\d) fps, "
                         r"frame age p50 (\d+) ms, (\d+) dropped in \d+ s")
    lines = wait_until(lambda: [m for m in pattern.finditer(daemon.log()) if float(m.group(1)) > 0],
                       f"a status line with frames:\n{daemon.log()}")
    assert lines


def test_no_status_line_when_the_interval_is_0(daemon_factory, tiny_model: Path, tiny_image: Path) -> None:
    daemon = daemon_factory(f"""
[[sources]]
id = "still"
kind = "image"
url = "{tiny_image}"
[model]
path = "{tiny_model}"
[publish]
endpoint = "tcp://127.0.0.1:{free_port()}"
[metrics]
enabled = false
[daemon]
status_interval_seconds = 0
""")
    assert daemon.process.wait(DEADLINE_SECONDS) == 0, daemon.log()  # one image, no loop: ends by itself
    assert "status:" not in daemon.log()


def test_a_daemon_that_never_started_does_not_say_stopped(tmp_path: Path, tiny_image: Path) -> None:
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_bytes(b"this is not an ONNX model")
    config = tmp_path / "bad_model.toml"
    config.write_text(f'[[sources]]\nid = "still"\nkind = "image"\nurl = "{tiny_image}"\n'
                      f'[model]\npath = "{not_onnx}"\nclasses = ["a"]\n[metrics]\nenabled = false\n')
    result = subprocess.run([sys.executable, "-m", "streamd", "run", "--config", str(config)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 1, result.stderr
    assert "streamd stopped" not in result.stderr
    assert "streamd:" in result.stderr  # the real error, one line
