"""Jetson board gauges from a fake sysfs root laid out like an Orin on JetPack 6; nothing on other machines."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from streamd.metrics.jetson import discover, register_board_metrics


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def fake_orin(root: Path) -> Path:
    for index, (zone, millidegrees) in enumerate([("cpu-thermal", "48500"), ("gpu-thermal", "46250"),
                                                  ("tj-thermal", "49000")]):
        _write(root, f"sys/devices/virtual/thermal/thermal_zone{index}/type", zone)
        _write(root, f"sys/devices/virtual/thermal/thermal_zone{index}/temp", millidegrees)
    _write(root, "sys/devices/virtual/thermal/thermal_zone3/type", "cv0-thermal")  # powered off: EINVAL
    (root / "sys/devices/virtual/thermal/thermal_zone3/temp").mkdir()  # reading it fails, like EINVAL
    hwmon = "sys/class/hwmon/hwmon1"
    _write(root, f"{hwmon}/name", "ina3221")
    for channel, (rail, millivolts, milliamperes) in enumerate([("VDD_IN", "5000", "1200"),
                                                                ("VDD_CPU_GPU_CV", "5000", "400"),
                                                                ("VDD_SOC", "5000", "300")], start=1):
        _write(root, f"{hwmon}/in{channel}_label", rail)
        _write(root, f"{hwmon}/in{channel}_input", millivolts)
        _write(root, f"{hwmon}/curr{channel}_input", milliamperes)
    _write(root, "sys/class/hwmon/hwmon0/name", "acpitz")  # another monitor: ignored
    _write(root, "sys/devices/platform/gpu.0/load", "375")
    _write(root, "sys/class/devfreq/17000000.gpu/cur_freq", "612000000")
    _write(root, "proc/stat", "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 50 0 50 350 50 0 0 0 0 0")
    return root


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in registry.collect() for sample in family.samples}


def test_orin_gauges(tmp_path: Path) -> None:
    root = fake_orin(tmp_path)
    registry = CollectorRegistry()
    assert register_board_metrics(registry, root) is not None
    samples = _samples(registry)
    assert samples[("streamd_jetson_temperature_celsius", (("zone", "gpu-thermal"),))] == 46.25
    assert samples[("streamd_jetson_temperature_celsius", (("zone", "tj-thermal"),))] == 49.0
    assert not any(labels == (("zone", "cv0-thermal"),) for _, labels in samples)  # unreadable: left out
    assert samples[("streamd_jetson_power_watts", (("rail", "VDD_IN"),))] == 6.0
    assert samples[("streamd_jetson_rail_current_amperes", (("rail", "VDD_SOC"),))] == 0.3
    assert samples[("streamd_jetson_rail_voltage_volts", (("rail", "VDD_CPU_GPU_CV"),))] == 5.0
    assert samples[("streamd_jetson_gpu_load_ratio", ())] == 0.375
    assert samples[("streamd_jetson_gpu_frequency_hertz", ())] == 612e6
    assert samples[("streamd_jetson_cpu_load_ratio", ())] == 0.2  # 200 busy of 1000 jiffies since boot
    # The next scrape measures since this one: 300 more busy jiffies of 400.
    (root / "proc/stat").write_text("cpu  250 0 250 800 100 0 0 0 0 0\n")
    assert _samples(registry)[("streamd_jetson_cpu_load_ratio", ())] == 0.75
    text = generate_latest(registry).decode()
    assert 'streamd_jetson_power_watts{rail="VDD_IN"} 6.0' in text


def test_gpu_load_from_devfreq_when_no_gpu0(tmp_path: Path) -> None:
    _write(tmp_path, "sys/class/devfreq/17000000.ga10b/cur_freq", "306000000")
    _write(tmp_path, "sys/class/devfreq/17000000.ga10b/device/load", "990")
    files = discover(tmp_path)
    assert files.gpu_load == tmp_path / "sys/class/devfreq/17000000.ga10b/device/load"
    registry = CollectorRegistry()
    register_board_metrics(registry, tmp_path)
    assert _samples(registry)[("streamd_jetson_gpu_load_ratio", ())] == 0.99


def test_nothing_elsewhere(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    assert register_board_metrics(registry, tmp_path) is None  # an empty root: no files, no error
    assert "streamd_jetson" not in generate_latest(registry).decode()
    _write(tmp_path, "proc/stat", "cpu  1 2 3 4 5 6 7 8 9 10")  # /proc/stat alone is not a Jetson
    assert discover(tmp_path).empty


def test_this_machine_does_not_fail() -> None:
    registry = CollectorRegistry()
    register_board_metrics(registry)  # this machine's real root: whatever it has, no error
    generate_latest(registry)
