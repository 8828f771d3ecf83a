"""The block-diagonal filter is the full 8x8 constant-velocity Kalman filter, written element-wise."""

from __future__ import annotations

import numpy as np

from streamd.tracking import kalman


def full_filter_step(mean, covariance, measurement, frames):
    """Textbook predict + update with 8x8 matrices, the noise model of streamd.tracking.kalman."""
    transition = np.eye(8)
    transition[range(4), range(4, 8)] = frames
    scale = np.abs(mean[[2, 3, 2, 3]])
    process = np.diag(np.concatenate([(kalman.STD_WEIGHT_POSITION * scale) ** 2,
                                      (kalman.STD_WEIGHT_VELOCITY * scale) ** 2])) * frames
    mean = transition @ mean
    covariance = transition @ covariance @ transition.T + process
    observe = np.eye(4, 8)
    noise = np.diag((kalman.STD_WEIGHT_POSITION * np.abs(mean[[2, 3, 2, 3]])) ** 2)
    innovation = observe @ covariance @ observe.T + noise
    gain = covariance @ observe.T @ np.linalg.inv(innovation)
    mean = mean + gain @ (measurement - observe @ mean)
    covariance = (np.eye(8) - gain @ observe) @ covariance
    return mean, covariance


def blocks_to_full(blocks: np.ndarray) -> np.ndarray:
    full = np.zeros((8, 8))
    full[range(4), range(4)] = blocks[kalman.POSITION]
    full[range(4), range(4, 8)] = blocks[kalman.CROSS]
    full[range(4, 8), range(4)] = blocks[kalman.CROSS]
    full[range(4, 8), range(4, 8)] = blocks[kalman.VELOCITY]
    return full


def test_block_filter_equals_the_full_filter_over_gaps() -> None:
    rng = np.random.default_rng(0)
    start = np.array([[100.0, 80.0, 40.0, 60.0]])
    mean, covariance = kalman.initiate(start)
    full_mean, full_covariance = mean[0].copy(), blocks_to_full(covariance[0])
    position = start[0].copy()
    for frames in (1, 1, 3, 1, 5, 2, 1):  # frames dropped in between
        position = position + frames * np.array([3.0, -2.0, 0.5, 0.2])
        measurement = position + rng.normal(0, 1, 4)
        mean, covariance = kalman.predict(mean, covariance, frames)
        mean, covariance = kalman.update(mean, covariance, measurement[None])
        full_mean, full_covariance = full_filter_step(full_mean, full_covariance, measurement, frames)
        assert np.allclose(mean[0], full_mean)
        assert np.allclose(blocks_to_full(covariance[0]), full_covariance)
    assert np.allclose(mean[0, 4:6], [3.0, -2.0], atol=0.6)  # it learned the motion


def test_box_conversions_round_trip() -> None:
    boxes = np.array([[10.0, 20.0, 50.0, 100.0], [0.0, 0.0, 1.0, 1.0]])
    assert np.allclose(kalman.xywh_to_boxes(kalman.boxes_to_xywh(boxes)), boxes)
