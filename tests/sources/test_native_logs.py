"""OpenCV's and FFmpeg's own log lines stay out of streamd's output: a wrong RTSP path and
a corrupt video make both libraries print in their own format unless streamd quiets them; streamd
reports the same failures in its own one line. A user can still turn them on to debug a camera."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import REPO


def _check(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamd", "check", "--config", str(config)],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=env)


def test_library_log_lines_are_quiet_unless_asked_for(rtsp_server, tmp_path: Path) -> None:
    server = rtsp_server(mounts=["cam0"])
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(b"RIFF" + os.urandom(4000))
    config = tmp_path / "check.toml"
    config.write_text(f'[[sources]]\nid = "wrongpath"\nkind = "rtsp"\nurl = "{server.url("no-such-path")}"\n'
                      f'open_timeout_seconds = 3.0\n'
                      f'[[sources]]\nid = "corrupt"\nkind = "file"\nurl = "{corrupt}"\n'
                      f'[model]\npath = "builtin:synthetic-shapes"\n[publish]\nendpoint = "tcp://127.0.0.1:*"\n'
                      f'[metrics]\nenabled = false\n')
    plain = {k: v for k, v in os.environ.items() if k not in ("OPENCV_LOG_LEVEL", "OPENCV_FFMPEG_LOGLEVEL")}
    quiet = _check(config, plain)
    output = quiet.stdout + quiet.stderr
    assert quiet.returncode == 1, output
    assert "source wrongpath (rtsp" in output and "source corrupt (file" in output
    assert "FAILED" in output
    for foreign in ("[ WARN:", "[ERROR:", "[rtsp @", "[OPENCV:FFMPEG", "DESCRIBE"):
        assert foreign not in output, output

    loud = _check(config, {**plain, "OPENCV_LOG_LEVEL": "WARNING", "OPENCV_FFMPEG_LOGLEVEL": "16"})
    assert "[ WARN:" in loud.stderr or "FFMPEG" in loud.stderr, loud.stderr  # the user's setting wins


def test_ffmpeg_lines_from_an_opencv_open_are_quiet_after_the_cli_set_up(rtsp_server) -> None:
    """OpenCV's open of a wrong path straight away (no streamd probe in front): FFmpeg's own
    "[rtsp @ 0x...] method DESCRIBE failed: 404" line is there by default and gone after
    ``streamd.cli``'s set-up, which runs before cv2 is imported."""
    url = rtsp_server(mounts=["cam0"]).url("no-such-path")
    plain = {k: v for k, v in os.environ.items() if k not in ("OPENCV_LOG_LEVEL", "OPENCV_FFMPEG_LOGLEVEL")}
    open_it = f"import cv2; assert not cv2.VideoCapture({url!r}, cv2.CAP_FFMPEG).isOpened()"
    setup = "from streamd.cli import _quiet_native_logs; _quiet_native_logs(); "
    before = subprocess.run([sys.executable, "-c", open_it], capture_output=True, text=True, timeout=60, env=plain)
    after = subprocess.run([sys.executable, "-c", setup + open_it], capture_output=True, text=True, timeout=60,
                           env=plain, cwd=REPO)
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert "DESCRIBE failed" in before.stderr  # what leaks into streamd's log unless quieted
    assert after.stderr == "", after.stderr
