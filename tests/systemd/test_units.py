"""The shipped unit files are valid for systemd and declare what the daemon implements."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, skip_unless_required

UNITS = ["streamd.service", "streamd@.service"]


def unit_settings(name: str) -> dict[str, str]:
    settings = {}
    for line in (REPO / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings[key] = value
    return settings


@pytest.mark.parametrize("name", UNITS)
def test_unit_declares_notify_watchdog_and_restart(name: str) -> None:
    settings = unit_settings(name)
    assert settings["Type"] == "notify"
    assert int(settings["WatchdogSec"]) > 0
    assert settings["Restart"] == "on-failure"
    assert settings["RestartPreventExitStatus"] == "2"  # bad config: restarting cannot help
    assert settings["NoNewPrivileges"] == "yes" and settings["ProtectSystem"] == "strict"
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"  # streamd.daemon.reload
    config = "/etc/streamd/%i.toml" if "@" in name else "/etc/streamd/streamd.toml"
    assert settings["ExecStart"].endswith(f"streamd run --config {config}")


@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify_accepts_unit(tmp_path: Path, name: str) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        skip_unless_required("systemd", "systemd-analyze is not installed")
    # Point ExecStart at this environment's interpreter so verify can check the command exists.
    launcher = tmp_path / "streamd"
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} -m streamd \"$@\"\n")
    launcher.chmod(0o755)
    unit_name = name.replace("@.", "@lobby.")
    unit = tmp_path / unit_name
    unit.write_text((REPO / "systemd" / name).read_text().replace("/opt/streamd/bin/streamd", str(launcher)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if unit_name in line or "Unknown" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr
