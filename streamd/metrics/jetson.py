"""Jetson power, thermals and load as Prometheus gauges, read from sysfs at scrape time.

What tegrastats prints comes from these files (L4T / JetPack 5-6):

- ``streamd_jetson_temperature_celsius{zone}``: ``/sys/devices/virtual/thermal/thermal_zone*/temp`` (m°C),
  the zone named by ``type``;
- ``streamd_jetson_power_watts{rail}``, ``streamd_jetson_rail_voltage_volts{rail}``,
  ``streamd_jetson_rail_current_amperes{rail}``: INA3221 monitors, ``/sys/class/hwmon/hwmon*/`` whose
  ``name`` is ``ina3221``: ``in{N}_label``, ``in{N}_input`` (mV), ``curr{N}_input`` (mA);
- ``streamd_jetson_gpu_load_ratio``: ``/sys/devices/platform/gpu.0/load`` (Orin, JetPack 6),
  ``/sys/devices/gpu.0/load`` (older L4T), or ``device/load`` of the GPU's devfreq node (per mille);
- ``streamd_jetson_gpu_frequency_hertz``: ``cur_freq`` of the GPU's devfreq node
  (``/sys/class/devfreq/*gpu*``, ``*ga10b*``, ``*gv11b*``, ``*gp10b*``);
- ``streamd_jetson_cpu_load_ratio``: ``/proc/stat``, the busy share of all CPUs since the previous scrape
  (exported only where a GPU load file exists, i.e. on a Jetson: node_exporter covers other hosts).

Each family is exported only when its files exist; on any other machine :func:`discover` finds nothing and
no collector is registered, so there is no metric and no error. A file that fails to read at scrape time
(a thermal zone that is powered off answers EINVAL) is left out of that scrape. Labels are bounded: zone
and rail names come from the hardware. Nothing here has run on a Jetson (none here); the layout is L4T's
documented one and the tests read it from a fake root folder.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

THERMAL_GLOB = "sys/devices/virtual/thermal/thermal_zone*"
HWMON_GLOB = "sys/class/hwmon/hwmon*"
INA3221_NAMES = ("ina3221",)
GPU_LOAD_FILES = ("sys/devices/platform/gpu.0/load", "sys/devices/gpu.0/load")
GPU_DEVFREQ_GLOBS = ("sys/class/devfreq/*gpu*", "sys/class/devfreq/*ga10b*", "sys/class/devfreq/*gv11b*",
                     "sys/class/devfreq/*gp10b*")
PROC_STAT = "proc/stat"


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _read_number(path: Path) -> float | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return None


@dataclass
class Rail:
    name: str
    voltage_file: Path  # mV
    current_file: Path  # mA


@dataclass
class BoardFiles:
    """The sysfs files found on this machine."""

    thermal_zones: dict[str, Path] = field(default_factory=dict)  # zone name -> temp file
    rails: list[Rail] = field(default_factory=list)
    gpu_load: Path | None = None
    gpu_frequency: Path | None = None
    proc_stat: Path | None = None

    @property
    def empty(self) -> bool:
        return not (self.thermal_zones or self.rails or self.gpu_load or self.gpu_frequency)


def _thermal_zones(root: Path) -> dict[str, Path]:
    zones: dict[str, Path] = {}
    for folder in sorted(root.glob(THERMAL_GLOB)):
        temp = folder / "temp"
        if not temp.is_file():
            continue
        name = _read_text(folder / "type") or folder.name
        if name in zones:  # two zones of one type: keep both, told apart by the folder
            name = f"{name}-{folder.name.removeprefix('thermal_zone')}"
        zones[name] = temp
    return zones


def _ina3221_rails(root: Path) -> list[Rail]:
    rails = []
    for folder in sorted(root.glob(HWMON_GLOB)):
        if (_read_text(folder / "name") or "") not in INA3221_NAMES:
            continue
        for label_file in sorted(folder.glob("in*_label")):
            channel = label_file.name.removeprefix("in").removesuffix("_label")
            name = _read_text(label_file)
            voltage, current = folder / f"in{channel}_input", folder / f"curr{channel}_input"
            if name and voltage.is_file() and current.is_file():
                rails.append(Rail(name, voltage, current))
    return rails


def _gpu_devfreq(root: Path) -> Path | None:
    for pattern in GPU_DEVFREQ_GLOBS:
        for folder in sorted(root.glob(pattern)):
            if (folder / "cur_freq").is_file():
                return folder
    return None


def discover(root: Path | str = "/") -> BoardFiles:
    """Look for the Jetson's sysfs files under ``root`` (a fake folder in tests)."""
    root = Path(root)
    files = BoardFiles(thermal_zones=_thermal_zones(root), rails=_ina3221_rails(root))
    devfreq = _gpu_devfreq(root)
    for relative in GPU_LOAD_FILES:
        if (root / relative).is_file():
            files.gpu_load = root / relative
            break
    if files.gpu_load is None and devfreq is not None and (devfreq / "device" / "load").is_file():
        files.gpu_load = devfreq / "device" / "load"
    if devfreq is not None:
        files.gpu_frequency = devfreq / "cur_freq"
    if files.gpu_load is not None and (root / PROC_STAT).is_file():
        files.proc_stat = root / PROC_STAT
    return files


class JetsonCollector:
    """A prometheus_client collector over :class:`BoardFiles`; reads the files at every scrape."""

    def __init__(self, files: BoardFiles) -> None:
        self.files = files
        self._lock = threading.Lock()
        self._last_cpu: tuple[float, float] | None = None  # (busy, total) jiffies at the previous scrape

    def describe(self) -> list[GaugeMetricFamily]:
        return [family for family, _ in self._families()]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for family, fill in self._families():
            fill(family)
            yield family

    def _families(self) -> list[tuple[GaugeMetricFamily, object]]:
        files = self.files
        families = []
        if files.thermal_zones:
            families.append((GaugeMetricFamily("streamd_jetson_temperature_celsius", "Temperature of a thermal "
                                               "zone (sysfs thermal_zone*/temp).", labels=["zone"]),
                             self._temperatures))
        if files.rails:
            families.append((GaugeMetricFamily("streamd_jetson_power_watts", "Power of a supply rail (INA3221).",
                                               labels=["rail"]), self._power))
            families.append((GaugeMetricFamily("streamd_jetson_rail_voltage_volts", "Voltage of a supply rail "
                                               "(INA3221).", labels=["rail"]), self._voltage))
            families.append((GaugeMetricFamily("streamd_jetson_rail_current_amperes", "Current of a supply rail "
                                               "(INA3221).", labels=["rail"]), self._current))
        if files.gpu_load is not None:
            families.append((GaugeMetricFamily("streamd_jetson_gpu_load_ratio", "GPU busy share, 0-1 (sysfs "
                                               "load, per mille)."), self._gpu_load))
        if files.gpu_frequency is not None:
            families.append((GaugeMetricFamily("streamd_jetson_gpu_frequency_hertz", "GPU clock (devfreq "
                                               "cur_freq)."), self._gpu_frequency))
        if files.proc_stat is not None:
            families.append((GaugeMetricFamily("streamd_jetson_cpu_load_ratio", "Busy share of all CPUs since "
                                               "the previous scrape, 0-1 (/proc/stat)."), self._cpu_load))
        return families

    def _temperatures(self, family: GaugeMetricFamily) -> None:
        for zone, path in self.files.thermal_zones.items():
            value = _read_number(path)
            if value is not None:
                family.add_metric([zone], value / 1000.0)

    def _rail_values(self) -> Iterator[tuple[str, float, float]]:
        for rail in self.files.rails:
            millivolts, milliamperes = _read_number(rail.voltage_file), _read_number(rail.current_file)
            if millivolts is not None and milliamperes is not None:
                yield rail.name, millivolts / 1000.0, milliamperes / 1000.0

    def _power(self, family: GaugeMetricFamily) -> None:
        for name, volts, amperes in self._rail_values():
            family.add_metric([name], volts * amperes)

    def _voltage(self, family: GaugeMetricFamily) -> None:
        for name, volts, _ in self._rail_values():
            family.add_metric([name], volts)

    def _current(self, family: GaugeMetricFamily) -> None:
        for name, _, amperes in self._rail_values():
            family.add_metric([name], amperes)

    def _gpu_load(self, family: GaugeMetricFamily) -> None:
        value = _read_number(self.files.gpu_load)
        if value is not None:
            family.add_metric([], value / 1000.0)

    def _gpu_frequency(self, family: GaugeMetricFamily) -> None:
        value = _read_number(self.files.gpu_frequency)
        if value is not None:
            family.add_metric([], value)

    def _cpu_load(self, family: GaugeMetricFamily) -> None:
        text = _read_text(self.files.proc_stat)
        if not text or not text.startswith("cpu "):
            return
        try:
            jiffies = [float(v) for v in text.splitlines()[0].split()[1:]]
        except ValueError:
            return
        idle = jiffies[3] + (jiffies[4] if len(jiffies) > 4 else 0.0)  # idle + iowait
        total = sum(jiffies)
        with self._lock:
            last, self._last_cpu = self._last_cpu, (total - idle, total)
        busy_delta, total_delta = (total - idle, total) if last is None else (total - idle - last[0], total - last[1])
        if total_delta > 0:
            family.add_metric([], min(1.0, max(0.0, busy_delta / total_delta)))


def register_board_metrics(registry: CollectorRegistry, root: Path | str = "/") -> JetsonCollector | None:
    """Register the Jetson gauges on ``registry`` when this machine has their files; None (nothing
    registered, nothing logged above DEBUG) elsewhere."""
    files = discover(root)
    if files.empty:
        log.debug("no Jetson power/thermal files under %s: no board metrics", root)
        return None
    collector = JetsonCollector(files)
    registry.register(collector)
    log.info("board metrics: %d thermal zones, %d power rails, GPU load %s", len(files.thermal_zones),
             len(files.rails), "yes" if files.gpu_load else "no")
    return collector
