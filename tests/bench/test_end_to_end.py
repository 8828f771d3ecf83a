"""``streamd bench``'s end-to-end comparison runs every variant (streamd run subprocesses, one process
and worker processes, tracking on and off; the hand-written loop in each layout) and writes its JSON.
The built-in model on the synthetic scene written as a file, a few frames: numbers are not asserted
(speed is measured in benchmarks, not in tests)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from streamd.bench.handwritten import LAYOUTS
from tests.support import REPO

FRAMES = 8
FILES = 2
STREAMD_VARIANTS = ("streamd_one_process", "streamd_one_process_tracking_off", "streamd_workers_2",
                    "streamd_workers_2_tracking_off")


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path_factory.mktemp("end_to_end") / "bench.json"
    result = subprocess.run([sys.executable, "-m", "streamd", "bench", "--model", "builtin:synthetic-shapes",
                             "--source", "synthetic", "--frames", str(FRAMES), "--rounds", "1", "--paced-seconds",
                             "0", "--files", str(FILES), "--json", str(out)],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "end-to-end runs had problems" not in result.stderr, result.stderr
    return result, json.loads(out.read_text())


def test_every_variant_runs_and_the_json_has_its_keys(bench: tuple[subprocess.CompletedProcess, dict]) -> None:
    result, results = bench
    assert "Traceback" not in result.stderr
    assert results["raw_fps"] > 0 and results["messages_received_rounds"] == [FRAMES]  # the existing keys stay
    end_to_end = results["end_to_end"]
    assert end_to_end["files"] == FILES and end_to_end["frames_per_file"] == FRAMES
    assert end_to_end["messages_per_run"] == FILES * FRAMES
    assert set(end_to_end["variants"]) == {*STREAMD_VARIANTS, *(f"handwritten_{layout}" for layout in LAYOUTS)}
    for name, variant in end_to_end["variants"].items():
        (run,) = variant["rounds"]
        assert run["expected"] == FILES * FRAMES, name
        # A real subscriber (or the loop's own reports) got every frame, each file's in order, and the
        # service ended by itself once every file had.
        assert run["missing"] == 0 and run["problems"] == [] and run["exit_code"] == 0, (name, run["problems"])
        assert run["fps"] > 0 and run["cpu_seconds_per_frame"] is not None, name
    for key in ("fps_ratio", "fps_ratio_tracking_on", "cpu_ratio", "cpu_ratio_tracking_on"):
        assert len(end_to_end["per_round"][key]) == 1, key
        assert end_to_end[key] == end_to_end["per_round"][key][0], key
    assert end_to_end["fps_ratio"] > 0 and end_to_end["fps_ratio_tracking_on"] > 0
    assert end_to_end["per_round"]["handwritten_best"][0].startswith("handwritten_")
    # The lines say what is divided by what.
    assert "streamd best fps, tracking off / hand-written best fps" in result.stdout
    assert "hand-written lowest CPU ms/frame / streamd lowest, tracking off" in result.stdout

