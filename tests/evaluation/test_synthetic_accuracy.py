"""End to end: the daemon on held-out synthetic scenes, scored from what a ZeroMQ subscriber gets."""

from __future__ import annotations

from streamd.evaluation.synthetic_accuracy import daemon_accuracy
from streamd.sources.synthetic import TRAINING_SEED_BASE

MIN_MAP50 = 0.90
MIN_MAP50_95 = 0.60
HELD_OUT_SEEDS = (1, 2, 3, 4)
FRAMES_PER_SEED = 50


def test_builtin_model_through_the_daemon_meets_the_accuracy_bar() -> None:
    assert max(HELD_OUT_SEEDS) < TRAINING_SEED_BASE
    result = daemon_accuracy(HELD_OUT_SEEDS, FRAMES_PER_SEED, width=640, height=480, timeout_seconds=90)
    assert result["daemon_exit_status"] == 0  # it stopped by itself once every source had ended
    # Lossless sources, and the daemon waits for the subscriber before its sources start
    # (publish.wait_for_subscriber_seconds): not one frame may be missing.
    assert result["frames_received"] == result["frames_sent"], result
    assert result["map50"] >= MIN_MAP50, result
    assert result["map50_95"] >= MIN_MAP50_95, result
