from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamd.quantize.calibration import ArrayDataReader, list_images, load_images
from streamd.quantize.errors import QuantizeError
from streamd.yolox.preprocess import YOLOX, preprocess


def test_folder_is_listed_sorted_by_name(image_folder: Path) -> None:
    images = list_images(image_folder)
    assert [p.name for p in images] == sorted(p.name for p in image_folder.glob("*.png"))


def test_list_file_resolves_relative_paths_and_skips_comments(image_folder: Path, tmp_path: Path) -> None:
    first, second = sorted(image_folder.glob("*.png"))[:2]
    (tmp_path / "sub").mkdir()
    list_file = tmp_path / "sub" / "calib.txt"
    list_file.write_text(f"# calibration set\n{first}\n\n../{second.name}\n")
    (tmp_path / second.name).write_bytes(second.read_bytes())
    assert list_images(list_file) == [first, tmp_path / "sub" / ".." / second.name]


def test_empty_or_missing_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(QuantizeError, match="holds no images"):
        list_images(tmp_path)
    with pytest.raises(QuantizeError, match="neither a folder nor a list file"):
        list_images(tmp_path / "missing")


def test_unreadable_images_are_skipped_and_counted(image_folder: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    paths = [*sorted(image_folder.glob("*.png"))[:3], broken]
    loaded = load_images(paths, YOLOX, 64, 64)
    assert len(loaded) == 3 and loaded.skipped == [broken]
    assert loaded.inputs.shape == (3, 3, 64, 64) and loaded.inputs.dtype == np.float32
    with pytest.raises(QuantizeError, match="none of the 1 images"):
        load_images([broken], YOLOX, 64, 64)


def test_inputs_are_the_daemons_preprocessing(image_folder: Path) -> None:
    import cv2

    path = sorted(image_folder.glob("*.png"))[0]
    loaded = load_images([path], YOLOX, 64, 64)
    expected, _ = preprocess(cv2.imread(str(path)), YOLOX, 64, 64)
    np.testing.assert_array_equal(loaded.inputs, expected)


def test_data_reader_yields_one_image_batches_then_none() -> None:
    reader = ArrayDataReader("images", np.zeros((2, 3, 8, 8), np.float32))
    batches = [reader.get_next(), reader.get_next(), reader.get_next()]
    assert [b["images"].shape for b in batches[:2]] == [(1, 3, 8, 8)] * 2 and batches[2] is None
    reader.rewind()
    assert reader.get_next() is not None
