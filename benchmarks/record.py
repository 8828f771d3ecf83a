"""What a benchmark result records about where it came from: ``provenance()`` returns the ``commit``,
``machine``, ``command`` and ``versions`` keys every JSON in benchmarks/results/ starts with.

    from record import provenance            # in a script in benchmarks/ (its folder is on sys.path)
    report = {**provenance(), **measured}

- ``commit``: ``git describe --always --dirty --abbrev=40`` of the checkout the script runs from (the
  full hash, ``-dirty`` when the tree has uncommitted changes); None outside a git checkout.
- ``machine``: name, CPU model and the cores this process may use (``pinned_cpus`` when fewer than
  the machine has), memory, GPUs and their driver, platform, load average.
- ``command``: the command line, the script's path relative to the checkout (a shell script passes
  its own: ``provenance("bash benchmarks/gpu_acceptance.sh")``).
- ``versions``: Python and the packages a measurement depends on (None: not installed).
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from streamd.bench.host import describe_machine  # noqa: E402

# Module (for an already imported one's __version__) and the distributions that may provide it.
PACKAGES = {
    "streamd": ("streamd", ("streamd",)),
    "numpy": ("numpy", ("numpy",)),
    "opencv": ("cv2", ("opencv-python", "opencv-python-headless", "opencv-contrib-python",
                       "opencv-contrib-python-headless")),
    "onnxruntime": ("onnxruntime", ("onnxruntime", "onnxruntime-gpu")),
    "torch": ("torch", ("torch",)),
    "cuda-python": ("cuda.bindings", ("cuda-bindings", "cuda-python")),
    "tensorrt": ("tensorrt", ("tensorrt", "tensorrt-cu12", "tensorrt-cu13")),
    "PyNvVideoCodec": ("PyNvVideoCodec", ("pynvvideocodec", "PyNvVideoCodec")),
    "pyzmq": ("zmq", ("pyzmq",)),
}


def _run(*command: str, cwd: Path | None = None) -> str | None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10, check=True, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def commit() -> str | None:
    if shutil.which("git") is None:
        return None
    return _run("git", "describe", "--always", "--dirty", "--abbrev=40", cwd=REPO)


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine() -> dict[str, object]:
    described = describe_machine()
    described["memory_gib"] = _memory_gib()
    total = os.cpu_count() or 0
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) < total:
        described["pinned_cpus"] = sorted(os.sched_getaffinity(0))
        described["machine_cpus"] = total
    if described.get("gpus") and shutil.which("nvidia-smi"):
        drivers = _run("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader")
        described["gpu_driver"] = drivers.splitlines()[0].strip() if drivers else None
    described["load_average_1min"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    return described


def command(argv: list[str] | None = None) -> str:
    argv = list(sys.argv if argv is None else argv)
    if argv:
        script = Path(argv[0])
        try:
            argv[0] = script.resolve().relative_to(REPO).as_posix()
        except ValueError:
            pass
    return shlex.join(["python", *argv])


def _version(module: str, distributions: tuple[str, ...]) -> str | None:
    imported = sys.modules.get(module)
    version = getattr(imported, "__version__", None)
    if isinstance(version, str):
        return version
    for distribution in distributions:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name, (module, distributions) in PACKAGES.items():
        found[name] = _version(module, distributions)
    return found


def provenance(run: str | list[str] | None = None) -> dict[str, object]:
    """The four keys a result starts with. ``run``: the command as a string (kept as it is) or an argv list;
    by default this process's command line."""
    return {"commit": commit(), "machine": machine(), "command": run if isinstance(run, str) else command(run),
            "versions": versions()}


if __name__ == "__main__":
    import json

    print(json.dumps(provenance(), indent=2))
