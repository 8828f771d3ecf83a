"""Sources to workers: balanced by pixel rate, stable across reloads, and how many workers `auto` means."""

from __future__ import annotations

import dataclasses

from streamd.config.load import parse_config
from streamd.supervisor.assignment import assign, pixel_rate, worker_count


def config(sources: list[dict], **daemon: object):
    return parse_config({"sources": sources, "model": {"path": "builtin:synthetic-shapes"}, "daemon": daemon})


def synthetic(source_id: str, width: int = 640, height: int = 480, fps: float = 10) -> dict:
    return {"id": source_id, "kind": "synthetic", "width": width, "height": height, "fps": fps}


def test_heaviest_sources_are_spread_first_and_loads_balance() -> None:
    sources = config([synthetic("big", 1920, 1080, 30), synthetic("big2", 1920, 1080, 30)]
                     + [synthetic(f"s{i}") for i in range(8)]).sources
    assignment = assign(sources, 2)
    assert assignment["big"] != assignment["big2"]
    loads = [sum(pixel_rate(s) for s in sources if assignment[s.id] == w) for w in (0, 1)]
    assert max(loads) / min(loads) < 1.1


def test_a_reload_moves_no_source_that_stays() -> None:
    sources = config([synthetic(f"s{i}") for i in range(6)]).sources
    before = assign(sources, 3)
    # s0 and s1 leave, two new ones come: the four that stay keep their worker; the new ones fill the gaps.
    later = config([synthetic(f"s{i}") for i in range(2, 6)] + [synthetic("n1"), synthetic("n2")]).sources
    after = assign(later, 3, before)
    assert all(after[f"s{i}"] == before[f"s{i}"] for i in range(2, 6))
    assert sorted(list(after.values()).count(w) for w in range(3)) == [2, 2, 2]


def test_a_previous_worker_beyond_the_count_is_reassigned() -> None:
    sources = config([synthetic("a"), synthetic("b")]).sources
    assert set(assign(sources, 2, {"a": 5, "b": 1}).values()) == {0, 1}


def test_auto_is_one_process_on_the_cpu_path_and_a_number_is_kept() -> None:
    many = [synthetic(f"s{i}", 1920, 1080, 30) for i in range(40)]
    assert worker_count(config(many), [0]) == 1
    assert worker_count(config(many, workers=3), [0]) == 3


def test_auto_on_the_gpu_path_follows_the_pixel_rate_and_the_gpus() -> None:
    many = config([synthetic(f"s{i}", 1920, 1080, 30) for i in range(40)])
    gpu = dataclasses.replace(many, model=dataclasses.replace(many.model, max_batch=8))
    assert worker_count(gpu, [0]) == 2  # 40 1080p30 streams, 24 a worker
    assert worker_count(gpu, [0, 1, 2]) == 3  # at least one a GPU
    few = dataclasses.replace(gpu, sources=gpu.sources[:2])
    assert worker_count(few, [0, 1, 2, 3]) == 2  # never more than the sources


def test_model_device_spreads_the_workers_over_the_gpus(tmp_path) -> None:
    """`device = [0, 1]`: workers alternate over the GPUs; a GPU listed twice gets two workers (one GPU
    standing in for two in tests); the worker's own config has the single device it got."""
    from streamd.supervisor.service import Supervisor, devices_of

    config_path = tmp_path / "gpus.toml"
    document = {"sources": [synthetic(f"s{i}") for i in range(4)],
                "model": {"path": "builtin:synthetic-shapes", "device": [0, 1]}, "daemon": {"workers": 4}}
    parsed = parse_config(document, tmp_path, str(config_path))
    assert parsed.model.device == 0 and devices_of(parsed) == [0, 1]
    supervisor = Supervisor(parsed, document, tmp_path)
    try:
        assert [worker.spec.device for worker in supervisor.workers] == [0, 1, 0, 1]
        assert [worker.spec.config().model.device for worker in supervisor.workers] == [0, 1, 0, 1]
        assert all(worker.spec.config().model.devices == () for worker in supervisor.workers)
    finally:
        supervisor.stop()
    twice = parse_config({**document, "model": {**document["model"], "device": [0, 0]}}, tmp_path)
    assert devices_of(twice) == [0, 0]


def test_bad_device_values_name_the_key() -> None:
    import pytest

    from streamd.errors import ConfigError

    for value in ([], [-1], ["0"], True, "some", -2):
        with pytest.raises(ConfigError, match="model.device"):
            parse_config({"sources": [synthetic("a")], "model": {"path": "builtin:synthetic-shapes", "device": value}})
