"""Q/DQ quantization through ``onnxruntime.quantization``, with a calibration cache.

Settings are the ones TensorRT's explicit-quantization path accepts: int8 symmetric activations
(zero point 0), per-channel symmetric int8 weights, Q/DQ only around Conv, biases left in float
(TensorRT fuses the float bias into the int8 convolution; an int32 bias DequantizeLinear is not
something its ONNX parser takes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from streamd.quantize.calibration import ArrayDataReader
from streamd.quantize.errors import QuantizeError
from streamd.quantize.progress import LogWriter

logger = logging.getLogger(__name__)

METHODS = ("entropy", "percentile", "minmax")
CACHE_FORMAT_VERSION = 3  # 2: calibrated here, entropy with 2048 bins; 3: in chunks
CALIBRATION_CHUNK = 16  # images per collect_data call


def _ort_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
            "minmax": CalibrationMethod.MinMax}[method]


def calibration_cache_key(model: onnx.ModelProto, image_paths: Sequence[Path], method: str,
                          convention_name: str, percentile: float) -> str:
    """Hash of everything the activation ranges depend on: model bytes, each image's path, size and
    mtime, the method and the preprocessing. A change to any of them means a fresh calibration."""
    digest = hashlib.sha256()
    digest.update(model.SerializeToString())
    for path in image_paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    digest.update(json.dumps([CACHE_FORMAT_VERSION, method, convention_name, percentile]).encode())
    return digest.hexdigest()[:20]


def calibration_cache_supported() -> bool:
    """ONNX Runtime can save activation ranges and quantize from them (``save_tensors_data`` and
    ``quantize_static(calibration_cache_path=...)``: onnxruntime >= 1.24, which needs Python >= 3.11)."""
    import inspect  # noqa: PLC0415

    from onnxruntime.quantization import calibrate, quantize_static  # noqa: PLC0415

    return (hasattr(calibrate, "save_tensors_data")
            and "calibration_cache_path" in inspect.signature(quantize_static).parameters)


def require_calibration_cache_support() -> None:
    if not calibration_cache_supported():
        import onnxruntime  # noqa: PLC0415

        raise QuantizeError(
            f"INT8 calibration needs onnxruntime >= 1.24 (this is {onnxruntime.__version__}; on Python 3.10, "
            "e.g. JetPack 6, none is published): quantize on a machine with Python >= 3.11, then build the "
            "engine on the target from the Q/DQ ONNX (`streamd run` with backend = \"tensorrt\", or trtexec "
            "--stronglyTyped)")


def _histogram_collector(calibrator):
    """ORT's histogram collector, made to take a (nearly) constant tensor.

    A tensor whose values all but coincide (a softmax over equal logits: 1/16 in every DFL bin of an
    untrained Ultralytics head) leaves numpy no room for 2048 float32 bins, and ORT's collector raises.
    Such a tensor gets one 0 added: its absolute-value histogram then spans [0, max], which is the range
    a symmetric scale covers anyway. Every other tensor is collected unchanged.
    """
    from onnxruntime.quantization.calibrate import HistogramCollector

    class _Collector(HistogramCollector):
        def collect(self, name_to_arr):
            fixed = {}
            for name, arrays in name_to_arr.items():
                data = np.concatenate([np.asarray(a).ravel() for a in arrays]) if isinstance(arrays, list) \
                    else np.asarray(arrays).ravel()
                if data.size and np.isfinite(data).all():
                    low, high = float(np.abs(data).min()), float(np.abs(data).max())
                    if high - low <= 2.5e-4 * max(high, 1e-30):
                        data = np.concatenate([data, np.zeros(1, data.dtype)])
                fixed[name] = data
            return super().collect(fixed)

    return _Collector(method=calibrator.method, symmetric=calibrator.symmetric, num_bins=calibrator.num_bins,
                      num_quantized_bins=calibrator.num_quantized_bins, percentile=calibrator.percentile,
                      scenario=calibrator.scenario)


@dataclass
class QdqQuantizer:
    """Quantizes one float model repeatedly with different exclusion lists, calibrating once.

    :meth:`calibrate` writes ONNX Runtime's range cache at ``cache_path``; every :meth:`quantize`
    (and later runs with the same inputs) reads it back.
    """

    float_model: onnx.ModelProto
    input_name: str
    method: str
    cache_path: Path
    percentile: float = 99.999
    threads: int = 1
    quantize_conv_outputs: bool = False
    # Calibration images for bias correction (streamd.quantize.bias); None: biases as quantized.
    bias_correction_inputs: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown calibration method '{self.method}', expected one of {METHODS}")
        self._workdir = tempfile.TemporaryDirectory(prefix="streamd-quantize-")
        self._float_path = Path(self._workdir.name) / "float.onnx"
        onnx.save(self.float_model, str(self._float_path))

    def settings_key(self) -> str:
        """Fingerprint of the Q/DQ settings; results derived from quantized models (the sensitivity
        ranking) are cached under it, the activation ranges are not (they do not depend on it)."""
        settings = [CACHE_FORMAT_VERSION, self.method, self.percentile, self.quantize_conv_outputs]
        return hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:12]

    @property
    def cache_hit(self) -> bool:
        return self.cache_path.is_file()

    def calibrate(self, calibration_inputs: np.ndarray) -> None:
        """Collect activation ranges over ``calibration_inputs`` (N x 3 x H x W) into the cache.

        Done here rather than inside ``quantize_static`` because quantize_static cannot set the
        histogram size, and its entropy default (128 bins, 128 quantized bins) leaves the KL search a
        single candidate: the full min/max range, i.e. "entropy" silently equals min-max. TensorRT's
        entropy calibrator uses 2048 bins and 128 quantized bins; so does this one.
        """
        require_calibration_cache_support()
        from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

        options = {"symmetric": True}
        if self.method == "entropy":
            options.update(num_bins=2048, num_quantized_bins=128)
        elif self.method == "percentile":
            options.update(num_bins=2048, percentile=self.percentile)
        # ONNX Runtime prints its own chatter ("Collecting tensor data and making histogram ...") to
        # stdout, which carries the report: into the debug log instead, out of the user's way.
        with contextlib.redirect_stdout(LogWriter(logger)):
            calibrator = create_calibrator(
                self._float_path, ["Conv"], augmented_model_path=Path(self._workdir.name) / "augmented.onnx",
                calibrate_method=_ort_method(self.method), providers=["CPUExecutionProvider"],
                extra_options=options)
            if hasattr(calibrator, "num_bins"):
                calibrator.collector = _histogram_collector(calibrator)
            # ORT holds every calibration tensor of a collect_data call in memory (about 125 MB an
            # image for yolox_nano at 416): chunks of images, merged into the same histograms.
            for start in range(0, calibration_inputs.shape[0], CALIBRATION_CHUNK):
                chunk = calibration_inputs[start:start + CALIBRATION_CHUNK]
                calibrator.collect_data(ArrayDataReader(self.input_name, chunk, f"calibrating ({self.method})"))
            ranges = calibrator.compute_data()
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        save_tensors_data(ranges, self.cache_path)

    def quantize(self, output_path: Path, exclude: Sequence[str] = (), correct_bias: bool = True) -> int:
        """Write the Q/DQ model to ``output_path`` with the Conv nodes in ``exclude`` left in float;
        returns how many Conv biases were corrected (``correct_bias`` and ``bias_correction_inputs`` set).

        Reads the activation ranges from the cache: call :meth:`calibrate` first when it is missing.
        """
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        require_calibration_cache_support()
        if not self.cache_hit:
            raise ValueError(f"no calibration cache at {self.cache_path}: call calibrate() first")
        extra_options = {
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "QuantizeBias": False,
        }
        if not self.quantize_conv_outputs:
            # By default ORT also puts Q/DQ on every Conv *output*: the pre-activation tensor before
            # SiLU, the objectness/class logits before Sigmoid and the raw box terms before the output
            # Concat. That is the main reason plain quantize_static wrecks YOLOX (docs/quantize.md);
            # TensorRT wants Q/DQ on Conv inputs only and fuses Conv+SiLU in int8 itself.
            extra_options["OpTypesToExcludeOutputQuantization"] = ["Conv"]
        # ORT logs a pre-processing hint on every call; the tool calls it dozens of times.
        quant_logger = logging.getLogger()
        previous_level = quant_logger.level
        quant_logger.setLevel(max(previous_level, logging.ERROR))
        # ...and prints calibration chatter to stdout, which is the report's stream here.
        try:
            with contextlib.redirect_stdout(LogWriter(logger)):
                quantize_static(
                    str(self._float_path), str(output_path), None,
                    quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"], per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=list(exclude), calibrate_method=_ort_method(self.method),
                    calibration_providers=["CPUExecutionProvider"], extra_options=extra_options,
                    calibration_cache_path=str(self.cache_path))
        finally:
            quant_logger.setLevel(previous_level)
        if not correct_bias or self.bias_correction_inputs is None:
            return 0
        from streamd.quantize.bias import correct_biases

        model = onnx.load(str(output_path))
        corrected = correct_biases(model, self.float_model, self.bias_correction_inputs, self.threads)
        onnx.save(model, str(output_path))
        return corrected

    def close(self) -> None:
        self._workdir.cleanup()


def count_qdq_nodes(model: onnx.ModelProto) -> dict[str, int]:
    """QuantizeLinear / DequantizeLinear counts, and the Conv nodes fed by a DequantizeLinear."""
    producers = {output: node for node in model.graph.node for output in node.output}
    int8_convs = sum(
        1 for node in model.graph.node if node.op_type == "Conv"
        and all(producers.get(name) is not None and producers[name].op_type == "DequantizeLinear"
                for name in node.input[:2]))
    return {
        "QuantizeLinear": sum(node.op_type == "QuantizeLinear" for node in model.graph.node),
        "DequantizeLinear": sum(node.op_type == "DequantizeLinear" for node in model.graph.node),
        "int8_conv": int8_convs,
    }
