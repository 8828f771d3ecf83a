"""A constant-velocity Kalman filter over many boxes at once (struct of arrays, no Python loop per track).

State per track: ``[cx, cy, w, h, vcx, vcy, vw, vh]`` in pixels and pixels per source frame; the
measurement is ``[cx, cy, w, h]``. Noise is proportional to the box's size, as in ByteTrack's filter
(its weights 1/20 for position and 1/160 for velocity), with width-scaled terms for x and w
(BoT-SORT's xywh variant: a box's aspect ratio is not assumed constant). ``predict_in_place``
takes the number of source frames that passed, so frames dropped before inference widen the
prediction instead of being mistaken for slow motion.

The motion model moves each coordinate with its own velocity and all noise is diagonal, so the 8×8
covariance never couples two coordinates: it is four 2×2 blocks (position, position-velocity,
velocity variance per coordinate). The filter is exactly the 8×8 one, in element-wise operations: no
batched 4x4 solve and matrix products, which would cost a third of the tracker's time.

Tracks are the last axis: means are (8, N) and covariances (3, 4, N) (rows POSITION, CROSS, VELOCITY
of each coordinate), so that every step runs over tracks in contiguous memory. With tracks first, a
step would run its inner loop over 2 or 4 values once per track, twice the cost at tracker sizes.
"""

from __future__ import annotations

import numpy as np

STD_WEIGHT_POSITION = 1.0 / 20
STD_WEIGHT_VELOCITY = 1.0 / 160
POSITION, CROSS, VELOCITY = range(3)  # rows of a track's (3, 4) covariance


def initiate(measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks' (8, N) means and (3, 4, N) covariances from (4, N) xywh measurements."""
    count = measurements.shape[1]
    mean = np.zeros((8, count))
    mean[:4] = measurements
    scale = np.abs(measurements[[2, 3, 2, 3]])  # the w, h, w, h each noise term scales with
    covariance = np.zeros((3, 4, count))
    covariance[POSITION] = (2 * STD_WEIGHT_POSITION * scale) ** 2
    covariance[VELOCITY] = (10 * STD_WEIGHT_VELOCITY * scale) ** 2
    return mean, covariance


def predict_in_place(mean: np.ndarray, covariance: np.ndarray, frames: int) -> None:
    """Advance every track by ``frames`` source frames (>= 1; more when frames were dropped), overwriting
    the tracker's own (C-contiguous) arrays: F P F^T + frames * Q with F = [[1, frames], [0, 1]] per
    coordinate, process noise growing with time. Written as few numpy calls, which at tracker sizes cost
    more than the arithmetic: rows of the covariance that take the same kind of term take it in one call
    (tests/tracking/test_kalman.py keeps the plain element-wise version and checks these floats equal
    its, bit for bit)."""
    count = mean.shape[1]
    if count == 0:
        return
    # The (w, h) each noise term scales with, against the covariance's rows seen as (x, y), (w, h)
    # pairs: (w, h, w, h) without building it. Of the box before the step.
    scale_squared = np.square(mean[2:4])
    factors = _predict_factors.get(frames)
    if factors is None:
        factors = _predict_factors[frames] = (
            np.array([[[frames * frames]], [[frames]]], np.float64),
            np.array([[[[frames * STD_WEIGHT_POSITION ** 2]]], [[[frames * STD_WEIGHT_VELOCITY ** 2]]]]))
    velocity_factors, noise_factors = factors
    if frames == 1:  # the usual step; multiplying by 1 changes no float
        mean[:4] += mean[4:]
    else:
        mean[:4] += frames * mean[4:]
    covariance[POSITION] += 2 * frames * covariance[CROSS]
    # P += frames^2 v and C += frames v: C reads v, which is only changed after.
    covariance[POSITION:CROSS + 1] += covariance[VELOCITY] * velocity_factors
    # P += frames q_p and V += frames q_v: process noise grows with time.
    covariance.reshape(3, 2, 2, count)[POSITION::2] += scale_squared * noise_factors


_predict_factors: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def update_in_place(mean: np.ndarray, covariance: np.ndarray, measurements: np.ndarray) -> None:
    """Correct (8, N) / (3, 4, N) arrays (gathered copies of the tracks matched, C-contiguous) with (4, N)
    xywh measurements, column for column, in place: position and velocity rows in one call each."""
    count = mean.shape[1]
    # p + q_p, the (w, h) scale broadcast over (x, y), (w, h) pairs as in predict_in_place.
    innovation = np.square(mean[2:4])
    innovation *= STD_WEIGHT_POSITION ** 2
    innovation = covariance[POSITION].reshape(2, 2, count) + innovation
    # Position gain p / s and velocity gain c / s.
    gains = covariance[POSITION:CROSS + 1] / innovation.reshape(4, count)
    residual = measurements - mean[:4]
    by_derivative = mean.reshape(2, 4, count)  # a view: position rows, velocity rows
    by_derivative += gains * residual
    # C -= position gain * c and V -= velocity gain * c (both of the old c), then P -= position gain * p.
    covariance[CROSS:] -= gains * covariance[CROSS]
    covariance[POSITION] -= gains[0] * covariance[POSITION]
