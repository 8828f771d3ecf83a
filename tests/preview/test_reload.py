"""The preview follows a reload (SIGHUP): a source added is listed and viewable, a source
removed is a 404, with the daemon's own preview server kept."""

from __future__ import annotations

import signal
import time
import urllib.request
from pathlib import Path

from tests.support import free_port, http_get, wait_for_http

DEADLINE_SECONDS = 60.0


def _config(sources: list[str], model: Path, ports: dict[str, int]) -> str:
    tables = "".join(f'[[sources]]\nid = "{s}"\nkind = "synthetic"\nfps = 5\nwidth = 96\nheight = 64\n'
                     for s in sources)
    return (tables + f'[model]\npath = "{model}"\n[publish]\nendpoint = "tcp://127.0.0.1:{ports["publish"]}"\n'
            f'[metrics]\nbind = "127.0.0.1:{ports["metrics"]}"\n'
            f'[preview]\nenabled = true\nbind = "127.0.0.1:{ports["preview"]}"\n')


def test_sources_added_and_removed_by_a_reload(daemon_factory, tiny_model: Path, tmp_path: Path) -> None:  # noqa: ANN001
    ports = {"publish": free_port(), "metrics": free_port(), "preview": free_port()}
    daemon = daemon_factory(_config(["steady", "leaving"], tiny_model, ports), name="preview-reload")
    base = f"http://127.0.0.1:{ports['preview']}"
    wait_for_http(f"{base}/", DEADLINE_SECONDS)
    _, index = http_get(f"{base}/")
    assert 'href="/sources/leaving"' in index and "joining" not in index
    (tmp_path / "preview-reload.toml").write_text(_config(["steady", "joining"], tiny_model, ports))
    daemon.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + DEADLINE_SECONDS
    while "joining" not in http_get(f"{base}/")[1]:
        assert time.monotonic() < deadline and daemon.process.poll() is None, daemon.log()
        time.sleep(0.2)
    status, body = http_get(f"{base}/sources/leaving")
    assert status == 404 and "joining" in body and "steady" in body
    with urllib.request.urlopen(f"{base}/sources/joining/snapshot.jpg", timeout=DEADLINE_SECONDS) as response:
        assert response.read(2) == b"\xff\xd8"
    assert daemon.process.poll() is None, daemon.log()
