"""The shipped units are hardened: `systemd-analyze security --offline=yes` exposure <= 2.0,
while keeping what the daemon needs: NVIDIA GPU device nodes, the network for cameras, and none of
the options known to break CUDA, TensorRT or ONNX Runtime."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO, skip_unless_required
from tests.systemd.test_units import UNITS, unit_settings

MAX_EXPOSURE = 2.0
_OVERALL = re.compile(r"Overall exposure level for \S+: (?P<exposure>\d+(\.\d+)?)")


def settings_all(name: str) -> dict[str, list[str]]:
    """Every value of every key (DeviceAllow= and SystemCallFilter= repeat)."""
    found: dict[str, list[str]] = {}
    for line in (REPO / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def exposure(name: str, folder: Path) -> tuple[float, str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        skip_unless_required("systemd", "systemd-analyze is not installed")
    unit_name = name.replace("@.", "@lobby.")
    (folder / unit_name).write_text((REPO / "systemd" / name).read_text())
    result = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", unit_name], cwd=folder,
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    if "--offline" in output and "unrecognized option" in output:
        skip_unless_required("systemd", "systemd-analyze too old for --offline (systemd >= 250)")
    match = _OVERALL.search(output)
    assert match, output
    return float(match.group("exposure")), output


@pytest.mark.parametrize("name", UNITS)
def test_exposure_is_at_most_2(tmp_path: Path, name: str) -> None:
    score, output = exposure(name, tmp_path)
    assert score <= MAX_EXPOSURE, output


@pytest.mark.parametrize("name", UNITS)
def test_gpu_devices_stay_reachable(name: str) -> None:
    settings = settings_all(name)
    assert settings["DevicePolicy"] == ["closed"]
    allowed = " ".join(settings["DeviceAllow"])
    for device in ("char-nvidia*", "/dev/nvidiactl", "/dev/nvidia-uvm", "char-nvhost*", "/dev/nvmap"):
        assert f"{device} rw" in allowed
    assert "video" in settings["SupplementaryGroups"][0]


@pytest.mark.parametrize("name", UNITS)
def test_options_that_break_cuda_are_left_out_with_the_reason(name: str) -> None:
    """PrivateDevices hides /dev/nvidia*, ProcSubset=pid hides /proc/driver/nvidia, MemoryDenyWriteExecute
    stops JIT (NVRTC, PTX, ONNX Runtime), PrivateUsers unmaps the video group, PrivateNetwork the cameras."""
    text = (REPO / "systemd" / name).read_text()
    settings = unit_settings(name)
    for option in ("PrivateDevices", "ProcSubset", "MemoryDenyWriteExecute", "PrivateUsers", "PrivateNetwork"):
        assert option not in settings, option
        assert f"Not {option}=" in text, f"{option}: say in a comment why it is left out"
    assert "@resources" in text and "SystemCallFilter=~@privileged" in text
    assert "AF_INET" in settings["RestrictAddressFamilies"]
