"""Every output layout streamd decodes on the CPU path: its model family and its decoder.

The registry ``model.layout`` names (``streamd.config.schema`` reads its keys); which layout a model
has is read by ``streamd.yolox.layout``.
"""

from __future__ import annotations

import importlib

# layout -> (family, "module:DecoderClass"). The family picks the preprocessing convention for
# model.preprocessing = "auto" (streamd.yolox.preprocess.FAMILY_CONVENTIONS).
LAYOUTS: dict[str, tuple[str, str]] = {
    "yolox": ("yolox", "streamd.yolox.postprocess:YoloxDecoder"),
    "yolox-decoded": ("yolox", "streamd.yolox.postprocess:YoloxDecoder"),
    "heads": ("yolox", "streamd.yolox.postprocess:YoloxDecoder"),
    "ultralytics": ("ultralytics", "streamd.yolox.ultralytics:UltralyticsDecoder"),
    "ultralytics-transposed": ("ultralytics", "streamd.yolox.ultralytics:UltralyticsDecoder"),
    "end2end": ("ultralytics", "streamd.yolox.ultralytics:EndToEndDecoder"),
    "rtdetr": ("rtdetr", "streamd.yolox.rtdetr:RtDetrDecoder"),
    "rtdetr-queries": ("rtdetr", "streamd.yolox.rtdetr:RtDetrDecoder"),
}
# The layouts the GPU path's kernels decode.
GPU_LAYOUTS = ("yolox", "yolox-decoded", "heads", "ultralytics", "ultralytics-transposed", "end2end", "rtdetr",
               "rtdetr-queries")


def layout_family(layout: str) -> str:
    return LAYOUTS[layout][0] if layout in LAYOUTS else "yolox"


def make_decoder(layout: str, input_width: int, input_height: int, num_classes: int, score_threshold: float,
                 nms_threshold: float, max_detections: int = 300):
    """The CPU decoder of ``layout``: ``decode(outputs) -> Detections`` in network-input pixels."""
    from streamd.errors import ModelLayoutError  # noqa: PLC0415

    if layout not in LAYOUTS:
        raise ModelLayoutError(f"unknown layout '{layout}', expected one of {tuple(LAYOUTS)}")
    module_name, attribute = LAYOUTS[layout][1].split(":")
    decoder_class = getattr(importlib.import_module(module_name), attribute)
    return decoder_class(layout, input_width, input_height, num_classes, score_threshold, nms_threshold,
                         max_detections)
