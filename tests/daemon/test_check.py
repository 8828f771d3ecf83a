"""``streamd check``: opens the model and every source once, says what it found, exits non-zero on
any problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import REPO, free_port


def run_check(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamd", "check", "--config", str(config)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def test_check_reports_model_and_sources(tmp_path: Path, tiny_model: Path, tiny_image: Path) -> None:
    config = tmp_path / "ok.toml"
    config.write_text(f'[[sources]]\nid = "still"\nkind = "image"\nurl = "{tiny_image}"\n'
                      f'[model]\npath = "{tiny_model}"\n')
    result = run_check(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "model" in result.stdout and "3 classes" in result.stdout
    assert "source still (image" in result.stdout and "64x48" in result.stdout
    assert "12 detection(s) on the first frame" in result.stdout
    assert result.stdout.rstrip().endswith("all good")


def test_check_fails_on_an_unreachable_camera(tmp_path: Path, tiny_model: Path, tiny_image: Path) -> None:
    refused = f"rtsp://127.0.0.1:{free_port()}/stream"  # nothing listens there
    config = tmp_path / "bad.toml"
    config.write_text(f'[[sources]]\nid = "still"\nkind = "image"\nurl = "{tiny_image}"\n'
                      f'[[sources]]\nid = "door"\nkind = "rtsp"\nurl = "{refused}"\nopen_timeout_seconds = 2.0\n'
                      f'[model]\npath = "{tiny_model}"\n')
    result = run_check(config)
    assert result.returncode == 1
    assert "source still (image" in result.stdout and ": ok" in result.stdout
    assert "source door (rtsp" in result.stdout and "FAILED" in result.stdout
    assert "problems found" in result.stdout


def test_check_reports_busy_publisher_and_metrics_ports(tmp_path: Path, tiny_model: Path, tiny_image: Path) -> None:
    import socket  # noqa: PLC0415

    with socket.create_server(("127.0.0.1", 0)) as busy_publish, socket.create_server(("127.0.0.1", 0)) as busy_http:
        publish_port, metrics_port = busy_publish.getsockname()[1], busy_http.getsockname()[1]
        config = tmp_path / "busy.toml"
        config.write_text(f'[[sources]]\nid = "still"\nkind = "image"\nurl = "{tiny_image}"\n'
                          f'[model]\npath = "{tiny_model}"\n'
                          f'[publish]\nendpoint = "tcp://127.0.0.1:{publish_port}"\n'
                          f'[metrics]\nbind = "127.0.0.1:{metrics_port}"\n')
        result = run_check(config)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"publisher tcp://127.0.0.1:{publish_port}: FAILED" in result.stdout
    assert f"metrics http://127.0.0.1:{metrics_port}: FAILED" in result.stdout
    assert "Address already in use" in result.stdout and "publish.endpoint" in result.stdout
    assert "problems found" in result.stdout


def test_check_releases_the_ports_it_tried(tmp_path: Path, tiny_model: Path, tiny_image: Path) -> None:
    publish_port, metrics_port = free_port(), free_port()
    config = tmp_path / "free.toml"
    config.write_text(f'[[sources]]\nid = "still"\nkind = "image"\nurl = "{tiny_image}"\n'
                      f'[model]\npath = "{tiny_model}"\n'
                      f'[publish]\nendpoint = "tcp://127.0.0.1:{publish_port}"\n'
                      f'[metrics]\nbind = "127.0.0.1:{metrics_port}"\n')
    result = run_check(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"publisher tcp://127.0.0.1:{publish_port}: ok" in result.stdout
    assert f"metrics http://127.0.0.1:{metrics_port}: ok" in result.stdout
    assert run_check(config).returncode == 0  # nothing left bound by the first check


def test_check_reports_a_missing_media_file_as_a_failed_source(tmp_path: Path, tiny_model: Path) -> None:
    config = tmp_path / "missing.toml"
    config.write_text(f'[[sources]]\nid = "gone"\nkind = "file"\nurl = "../configs/../nowhere.avi"\n'
                      f'[model]\npath = "{tiny_model}"\n[publish]\nendpoint = "tcp://127.0.0.1:*"\n'
                      f'[metrics]\nenabled = false\n')
    result = run_check(config)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"source gone (file {tmp_path.parent / 'nowhere.avi'}): FAILED: file " in result.stdout  # normalised
