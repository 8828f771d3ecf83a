"""The shipped example configs serve the preview on 127.0.0.1:9401 (the address the docs link to), and
configs/vtest.toml runs from a checkout beside ../shared: `streamd check` passes, and `streamd run` serves
an index with a thumbnail of both sources over a real socket."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support import REPO, free_port, require_shared, wait_for_http

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

CONFIGS = REPO / "configs"


def test_example_configs_turn_the_preview_on_locally() -> None:
    for name in ("example.toml", "vtest.toml"):
        preview = tomllib.loads((CONFIGS / name).read_text())["preview"]
        assert preview["enabled"] is True, name
        assert preview["bind"] == "127.0.0.1:9401", name  # local only, where the docs' link points


def _vtest_on_free_ports(tmp_path: Path) -> tuple[Path, int]:
    """configs/vtest.toml as shipped, written elsewhere: its relative paths made absolute as they resolve from
    configs/ (so the data must sit beside the checkout), its ports free ones."""
    text = (CONFIGS / "vtest.toml").read_text()
    shared = (CONFIGS / "../../shared").resolve()
    require_shared(*(shared / p for p in re.findall(r'"\.\./\.\./shared/([^"]+)"', text)))
    preview_port = free_port()
    text = (text.replace('"../../shared/', f'"{shared}/')
            .replace('"tcp://127.0.0.1:5555"', f'"tcp://127.0.0.1:{free_port()}"')
            .replace('"127.0.0.1:9400"', f'"127.0.0.1:{free_port()}"')
            .replace('"127.0.0.1:9401"', f'"127.0.0.1:{preview_port}"'))
    assert not re.search(r'"(\.\./|tcp://127\.0\.0\.1:5555"|127\.0\.0\.1:940[01]")', text), text
    path = tmp_path / "vtest.toml"
    path.write_text(text)
    return path, preview_port


def test_vtest_config_checks_from_the_checkout(tmp_path: Path) -> None:
    require_shared(CONFIGS / "../../shared/models/yolox_nano.onnx")
    result = subprocess.run([sys.executable, "-m", "streamd", "check", "--config", str(CONFIGS / "vtest.toml")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    # The shipped ports may be taken on a test machine: only the port lines may fail.
    failed = [line for line in result.stdout.splitlines() if "FAILED" in line]
    assert all(line.startswith(("publisher ", "metrics ", "preview ")) for line in failed), result.stdout
    assert "source street (file" in result.stdout and "source dog (image" in result.stdout
    assert result.stdout.count(": ok") >= 3, result.stdout + result.stderr  # model and both sources
    path, _ = _vtest_on_free_ports(tmp_path)
    result = subprocess.run([sys.executable, "-m", "streamd", "check", "--config", str(path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.endswith("all good\n"), result.stdout + result.stderr


def test_vtest_config_serves_thumbnails_of_both_sources(daemon_factory, tmp_path: Path) -> None:  # noqa: ANN001
    path, preview_port = _vtest_on_free_ports(tmp_path)
    daemon = daemon_factory(path.read_text())
    base = f"http://127.0.0.1:{preview_port}"
    wait_for_http(f"{base}/", 60)
    thumbnails: list[str] = []
    for _ in range(100):  # until both sources have published a frame
        with urllib.request.urlopen(f"{base}/", timeout=10) as response:
            thumbnails = re.findall(r'<img class="thumb" src="([^"]+)"', response.read().decode())
        if len(thumbnails) == 2:
            break
        assert daemon.process.poll() is None, daemon.log()
        time.sleep(0.2)
    assert thumbnails == ["/sources/street/snapshot.jpg", "/sources/dog/snapshot.jpg"], daemon.log()
    for thumbnail in thumbnails:
        with urllib.request.urlopen(f"{base}{thumbnail}", timeout=30) as response:
            assert response.status == 200 and response.headers["Content-Type"] == "image/jpeg"
            assert response.read(2) == b"\xff\xd8"
