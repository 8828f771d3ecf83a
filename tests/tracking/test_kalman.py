"""The block-diagonal filter is the full 8x8 constant-velocity Kalman filter, written element-wise; the
tracker's in-place steps compute exactly (bit for bit) the plain element-wise steps below."""

from __future__ import annotations

import numpy as np

from streamd.tracking import kalman

P, C, V = kalman.POSITION, kalman.CROSS, kalman.VELOCITY


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


def plain_predict(mean, covariance, frames):
    """The predict step on the 2x2 blocks, one term at a time (the readable form of predict_in_place),
    with tracks as the first axis: (N, 8) means, (N, 3, 4) covariances."""
    new_mean = mean.copy()
    new_mean[:, :4] += frames * mean[:, 4:]
    p, c, v = covariance[:, P], covariance[:, C], covariance[:, V]
    scale_squared = np.abs(mean[:, [2, 3, 2, 3]]) ** 2
    new = np.empty_like(covariance)
    new[:, P] = p + 2 * frames * c + frames * frames * v + frames * kalman.STD_WEIGHT_POSITION ** 2 * scale_squared
    new[:, C] = c + frames * v
    new[:, V] = v + frames * kalman.STD_WEIGHT_VELOCITY ** 2 * scale_squared
    return new_mean, new


def plain_update(mean, covariance, measurements):
    """The update step on the 2x2 blocks (the readable form of update_in_place)."""
    p, c, v = covariance[:, P], covariance[:, C], covariance[:, V]
    innovation = p + kalman.STD_WEIGHT_POSITION ** 2 * np.abs(mean[:, [2, 3, 2, 3]]) ** 2
    gain_position, gain_velocity = p / innovation, c / innovation
    residual = measurements - mean[:, :4]
    new_mean = mean.copy()
    new_mean[:, :4] += gain_position * residual
    new_mean[:, 4:] += gain_velocity * residual
    new = np.empty_like(covariance)
    new[:, P] = p - gain_position * p
    new[:, C] = c - gain_position * c
    new[:, V] = v - gain_velocity * c
    return new_mean, new


def blocks_to_full(blocks: np.ndarray) -> np.ndarray:
    full = np.zeros((8, 8))
    full[range(4), range(4)] = blocks[P]
    full[range(4), range(4, 8)] = blocks[C]
    full[range(4, 8), range(4)] = blocks[C]
    full[range(4, 8), range(4, 8)] = blocks[V]
    return full


def test_block_filter_equals_the_full_filter_over_gaps() -> None:
    rng = np.random.default_rng(0)
    start = np.array([100.0, 80.0, 40.0, 60.0])
    mean, covariance = kalman.initiate(start[:, None])  # tracks are the last axis
    full_mean, full_covariance = mean[:, 0].copy(), blocks_to_full(covariance[..., 0])
    position = start.copy()
    for frames in (1, 1, 3, 1, 5, 2, 1):  # frames dropped in between
        position = position + frames * np.array([3.0, -2.0, 0.5, 0.2])
        measurement = position + rng.normal(0, 1, 4)
        kalman.predict_in_place(mean, covariance, frames)
        kalman.update_in_place(mean, covariance, measurement[:, None])
        full_mean, full_covariance = full_filter_step(full_mean, full_covariance, measurement, frames)
        assert np.allclose(mean[:, 0], full_mean)
        assert np.allclose(blocks_to_full(covariance[..., 0]), full_covariance)
    assert np.allclose(mean[4:6, 0], [3.0, -2.0], atol=0.6)  # it learned the motion


def test_in_place_steps_equal_the_plain_steps_bit_for_bit() -> None:
    """Floating-point addition is not associative: the in-place steps must add the same terms in the
    same order, or track ids drift apart from the reference after enough frames."""
    rng = np.random.default_rng(1)
    tracks = 7
    boxes = np.column_stack([rng.uniform(0, 800, (tracks, 2)), rng.uniform(5, 200, (tracks, 2))])
    mean, covariance = kalman.initiate(boxes.T)  # tracks last: (8, N), (3, 4, N)
    mean[4:] = rng.normal(0, 3, (tracks, 4)).T
    plain_mean, plain_covariance = mean.T.copy(), covariance.transpose(2, 0, 1).copy()  # tracks first

    def equal(mean, covariance, plain_mean, plain_covariance) -> bool:
        return np.array_equal(mean.T, plain_mean) and np.array_equal(covariance.transpose(2, 0, 1), plain_covariance)

    for frames in (1, 2, 1, 7, 1, 3, 1, 1):
        kalman.predict_in_place(mean, covariance, frames)
        plain_mean, plain_covariance = plain_predict(plain_mean, plain_covariance, frames)
        assert equal(mean, covariance, plain_mean, plain_covariance)
        measurements = plain_mean[:, :4] + rng.normal(0, 2, (tracks, 4))
        gathered_mean, gathered_covariance = mean.copy(), covariance.copy()  # as the tracker gathers matches
        kalman.update_in_place(gathered_mean, gathered_covariance, measurements.T.copy())
        plain_mean, plain_covariance = plain_update(plain_mean, plain_covariance, measurements)
        assert equal(gathered_mean, gathered_covariance, plain_mean, plain_covariance)
        mean, covariance = gathered_mean, gathered_covariance
