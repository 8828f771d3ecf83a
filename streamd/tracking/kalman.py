"""A constant-velocity Kalman filter over many boxes at once (struct of arrays, no Python loop per track).

State per track: ``[cx, cy, w, h, vcx, vcy, vw, vh]`` in pixels and pixels per source frame; the
measurement is ``[cx, cy, w, h]``. Noise is proportional to the box's size, as in ByteTrack's filter
(its weights 1/20 for position and 1/160 for velocity), with width-scaled terms for x and w
(BoT-SORT's xywh variant: a box's aspect ratio is not assumed constant). ``predict`` takes the
number of source frames that passed, so frames dropped before inference widen the prediction
instead of being mistaken for slow motion.
"""

from __future__ import annotations

import numpy as np

STD_WEIGHT_POSITION = 1.0 / 20
STD_WEIGHT_VELOCITY = 1.0 / 160
_MEASURE = np.s_[:, :4]


def boxes_to_xywh(boxes_xyxy: np.ndarray) -> np.ndarray:
    """(K, 4) xyxy -> (K, 4) centre x, centre y, width, height (float64)."""
    boxes = boxes_xyxy.astype(np.float64)
    size = boxes[:, 2:] - boxes[:, :2]
    return np.concatenate([boxes[:, :2] + size / 2, size], axis=1)


def xywh_to_boxes(xywh: np.ndarray) -> np.ndarray:
    half = xywh[:, 2:4] / 2
    return np.concatenate([xywh[:, :2] - half, xywh[:, :2] + half], axis=1)


def _size_scale(xywh: np.ndarray) -> np.ndarray:
    """(N, 4) the w, h, w, h each noise term scales with."""
    return np.abs(xywh[:, [2, 3, 2, 3]])


def initiate(measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks' (N, 8) means and (N, 8, 8) covariances from (N, 4) xywh measurements."""
    count = measurements.shape[0]
    mean = np.zeros((count, 8))
    mean[:, :4] = measurements
    scale = _size_scale(measurements)
    std = np.concatenate([2 * STD_WEIGHT_POSITION * scale, 10 * STD_WEIGHT_VELOCITY * scale], axis=1)
    covariance = np.zeros((count, 8, 8))
    covariance[:, range(8), range(8)] = std ** 2
    return mean, covariance


def predict(mean: np.ndarray, covariance: np.ndarray, frames: float) -> tuple[np.ndarray, np.ndarray]:
    """Advance every track by ``frames`` source frames (>= 1; more when frames were dropped)."""
    if mean.shape[0] == 0:
        return mean, covariance
    new_mean = mean.copy()
    new_mean[:, :4] += frames * mean[:, 4:]
    # F P F^T with F = [[I, dt I], [0, I]], written out in blocks (cheaper than two batched matmuls).
    p11, p12, p21, p22 = covariance[:, :4, :4], covariance[:, :4, 4:], covariance[:, 4:, :4], covariance[:, 4:, 4:]
    new_covariance = np.empty_like(covariance)
    new_covariance[:, :4, :4] = p11 + frames * (p12 + p21) + frames * frames * p22
    new_covariance[:, :4, 4:] = p12 + frames * p22
    new_covariance[:, 4:, :4] = p21 + frames * p22
    new_covariance[:, 4:, 4:] = p22
    # Process noise grows with the time that passed.
    scale = _size_scale(mean)
    variance = np.concatenate([(STD_WEIGHT_POSITION * scale) ** 2, (STD_WEIGHT_VELOCITY * scale) ** 2], axis=1)
    new_covariance[:, range(8), range(8)] += frames * variance
    return new_mean, new_covariance


def update(mean: np.ndarray, covariance: np.ndarray, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct (N, 8) / (N, 8, 8) with (N, 4) xywh measurements, row for row."""
    if mean.shape[0] == 0:
        return mean, covariance
    noise = (STD_WEIGHT_POSITION * _size_scale(mean)) ** 2
    innovation_covariance = covariance[:, :4, :4].copy()
    innovation_covariance[:, range(4), range(4)] += noise
    cross = covariance[:, :, :4]  # P H^T: H picks the first four components
    # K = P H^T S^-1, from S K^T = (P H^T)^T (S is symmetric).
    gain = np.linalg.solve(innovation_covariance, cross.transpose(0, 2, 1)).transpose(0, 2, 1)
    residual = measurements - mean[:, :4]
    new_mean = mean + np.einsum("nij,nj->ni", gain, residual)
    new_covariance = covariance - gain @ cross.transpose(0, 2, 1)
    return new_mean, new_covariance
