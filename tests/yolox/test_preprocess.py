"""Both preprocessing conventions against straightforward reference implementations."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamd.yolox.preprocess import LEGACY, YOLOX, Preprocessor, letterbox_geometry


def yolox_reference(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """YOLOX's own ``preproc`` (yolox/data/data_augment.py), transcribed."""
    padded = np.ones((size[0], size[1], 3), dtype=np.uint8) * 114
    r = min(size[0] / image.shape[0], size[1] / image.shape[1])
    resized = cv2.resize(image, (int(image.shape[1] * r), int(image.shape[0] * r)),
                         interpolation=cv2.INTER_LINEAR).astype(np.uint8)
    padded[: int(image.shape[0] * r), : int(image.shape[1] * r)] = resized
    return np.ascontiguousarray(padded.transpose(2, 0, 1), dtype=np.float32)[None]


def legacy_reference(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centred letterbox, pad 128, RGB, /255, ImageNet mean/std, step by step."""
    height, width = size
    r = min(height / image.shape[0], width / image.shape[1])
    new_w, new_h = int(image.shape[1] * r), int(image.shape[0] * r)
    canvas = np.full((height, width, 3), 128, np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    rgb = canvas[:, :, ::-1].astype(np.float32) / 255.0
    normalised = (rgb - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    return normalised.transpose(2, 0, 1)[None].astype(np.float32)


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (123, 200, 3), dtype=np.uint8)


def test_yolox_convention_matches_yolox_preproc(image: np.ndarray) -> None:
    network_input, geometry = Preprocessor(YOLOX, 96, 80)(image)
    np.testing.assert_array_equal(network_input, yolox_reference(image, (80, 96)))
    assert (geometry.pad_x, geometry.pad_y) == (0, 0)


def test_legacy_convention_matches_reference(image: np.ndarray) -> None:
    network_input, geometry = Preprocessor(LEGACY, 96, 96)(image)
    np.testing.assert_allclose(network_input, legacy_reference(image, (96, 96)), atol=1e-5)
    assert geometry.pad_y > 0 and geometry.pad_x == 0


def test_frame_size_change_repaints_the_padding(image: np.ndarray) -> None:
    preprocessor = Preprocessor(YOLOX, 96, 96)
    preprocessor(np.full((50, 200, 3), 255, np.uint8))  # wide: leaves a tall pad
    network_input, _ = preprocessor(image)
    np.testing.assert_array_equal(network_input, yolox_reference(image, (96, 96)))


@pytest.mark.parametrize("centered", [False, True])
def test_boxes_map_back_to_frame_pixels(centered: bool) -> None:
    geometry = letterbox_geometry(768, 576, 416, 416, centered)
    frame_box = np.array([[100.0, 50.0, 400.0, 500.0]], np.float32)
    input_box = frame_box * geometry.ratio + np.array([geometry.pad_x, geometry.pad_y] * 2, np.float32)
    np.testing.assert_allclose(geometry.to_frame(input_box), frame_box, atol=1e-3)


def test_rejects_non_bgr_images() -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        Preprocessor(YOLOX, 64, 64)(np.zeros((10, 10), np.uint8))


@pytest.mark.parametrize("convention", [YOLOX, LEGACY], ids=lambda c: c.name)
def test_reused_input_equals_a_fresh_one_bit_for_bit(convention) -> None:
    """Only the resized region is rewritten per frame, the padding once per frame size: every call
    gives the bits a fresh preprocessor gives, across sizes (wide, tall, back again) and frames."""
    rng = np.random.default_rng(1)
    sizes = [(123, 200), (123, 200), (200, 90), (200, 90), (123, 200), (96, 96), (123, 200)]
    reused = Preprocessor(convention, 96, 80)
    letterbox_only = Preprocessor(convention, 96, 80)
    for height, width in sizes:
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        letterbox_only.letterbox(frame)  # a canvas-only call between frames changes nothing
        network_input, geometry = reused(frame)
        expected, expected_geometry = Preprocessor(convention, 96, 80)(frame)
        assert geometry == expected_geometry
        assert network_input.dtype == expected.dtype
        np.testing.assert_array_equal(network_input.view(np.uint32), expected.view(np.uint32))
        np.testing.assert_array_equal(letterbox_only(frame)[0].view(np.uint32), expected.view(np.uint32))
