"""Bias correction on the real yolox_nano in ONNX Runtime: only INT8 Convs' biases change, and the
corrected model's detection output is closer to the float model's on the calibration images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from streamd.quantize import qdq
from streamd.quantize.bias import correct_biases
from streamd.quantize.calibration import load_images
from streamd.quantize.fidelity import DetectionModelSpec, FidelityMeter, ModelRunner
from streamd.quantize.model import load_model
from streamd.quantize.qdq import QdqQuantizer
from streamd.yolox.preprocess import CONVENTIONS
from tests.support import DOG, SHARED, YOLOX_NANO, require_shared

COCO = SHARED / "calib" / "coco_val2017_100"


@pytest.mark.skipif(not qdq.calibration_cache_supported(), reason="INT8 calibration needs onnxruntime >= 1.24")
def test_bias_correction_moves_only_int8_biases_and_cuts_the_output_error(tmp_path: Path) -> None:
    require_shared(YOLOX_NANO, DOG, COCO)
    info = load_model(YOLOX_NANO)
    paths = [DOG, *sorted(COCO.glob("*.jpg"))[:3]]
    images = load_images(paths, CONVENTIONS["yolox"], info.input_width, info.input_height).inputs
    quantizer = QdqQuantizer(info.model, info.input_name, "percentile", tmp_path / "ranges.json")
    try:
        quantizer.calibrate(images)
        # The depthwise convs in float, as the guard keeps them: the rest is what bias correction acts on.
        float_convs = [node.name for node in info.model.graph.node if node.op_type == "Conv"
                       and any(a.name == "group" and a.i > 1 for a in node.attribute)]
        quantizer.quantize(tmp_path / "plain.onnx", float_convs)
    finally:
        quantizer.close()
    model = onnx.load(str(tmp_path / "plain.onnx"))
    before = {t.name: numpy_helper.to_array(t).copy() for t in model.graph.initializer}
    corrected = correct_biases(model, info.model, images)
    assert corrected == len(info.conv_macs) - len(float_convs)
    changed = {t.name for t in model.graph.initializer
               if not np.array_equal(numpy_helper.to_array(t), before.get(t.name))}
    biases = {node.input[2] for node in model.graph.node if node.op_type == "Conv" and node.name not in float_convs}
    assert changed and changed <= biases
    onnx.save(model, str(tmp_path / "corrected.onnx"))

    spec = DetectionModelSpec("yolox", 80, info.input_width, info.input_height)
    meter = FidelityMeter(spec, ModelRunner(YOLOX_NANO).run(images))
    plain = meter.output_error(ModelRunner(tmp_path / "plain.onnx").run(images))
    fixed = meter.output_error(ModelRunner(tmp_path / "corrected.onnx").run(images))
    assert fixed < 0.9 * plain, (plain, fixed)
