#!/usr/bin/env python3
"""An ONNX model without its weights, and a full model again from it with random weights of the same statistics.

    python benchmarks/onnx_skeleton.py strip rtdetr-l.onnx rtdetr-l.skeleton.onnx
    python benchmarks/onnx_skeleton.py restore rtdetr-l.skeleton.onnx rtdetr-l.onnx [--seed 0]

For timing a model where only a little data can be taken along: speed does not depend on weight values.
``strip`` keeps the graph, the metadata, every node and every initializer's name, shape and dtype, and
empties each large float initializer of the main graph (float32, float16, float64; at least
``--keep-below`` bytes, 1 KiB by default, finite, and not of 2 to 16 distinct values), writing its mean,
standard deviation, minimum and maximum into one metadata entry (``onnx_skeleton``, JSON) of the same
file. Every other initializer (integer shapes and indices, small tensors, masks, constants holding inf or
nan) is kept verbatim, so the restored graph computes what the original's does, with other weights; a
tensor of one value comes back exactly (its deviation is 0).

``restore`` fills each emptied initializer with normal random numbers of its mean and standard
deviation (seeded by ``--seed`` and the tensor's name, so a tensor's values do not depend on the others),
clipped to its minimum and maximum so that signs hold (variances stay non-negative), then rescaled once to
the recorded mean and deviation and clipped again; removes the metadata entry; checks the result with
``onnx.checker``.
Needs numpy and onnx only.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

SKELETON_KEY = "onnx_skeleton"
FORMAT = 1
KEEP_BELOW = 1024
MASK_VALUES = 16
FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)
_DATA_FIELDS = ("raw_data", "float_data", "double_data", "int32_data")


def _metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {entry.key: entry.value for entry in model.metadata_props}


def _statistics(values: np.ndarray) -> dict[str, float] | None:
    """Mean, std, min, max in float64; None for a constant kept as is: one holding inf or nan (masked
    anchors), or a mask (2 to ``MASK_VALUES`` distinct values)."""
    values = values.astype(np.float64, copy=False)
    if not np.all(np.isfinite(values)) or 1 < np.unique(values).size <= MASK_VALUES:
        return None
    return {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
            "max": float(values.max())}


def strip(model: onnx.ModelProto, keep_below: int = KEEP_BELOW) -> tuple[onnx.ModelProto, int, int]:
    """(the skeleton, tensors emptied, bytes removed). The model is not changed."""
    if SKELETON_KEY in _metadata(model):
        raise ValueError("the model is already a skeleton")
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(model)
    statistics: dict[str, dict[str, float]] = {}
    removed = 0
    for tensor in skeleton.graph.initializer:
        if tensor.data_type not in FLOAT_TYPES or tensor.data_location == TensorProto.EXTERNAL:
            continue
        values = numpy_helper.to_array(tensor)
        if values.nbytes < keep_below:
            continue
        stats = _statistics(values)
        if stats is None:
            continue
        if tensor.name in statistics:
            raise ValueError(f"two initializers are named {tensor.name!r}")
        statistics[tensor.name] = stats
        removed += values.nbytes
        for field in _DATA_FIELDS:
            tensor.ClearField(field)
    entry = skeleton.metadata_props.add()
    entry.key = SKELETON_KEY
    entry.value = json.dumps({"format": FORMAT, "tensors": statistics}, separators=(",", ":"))
    return skeleton, len(statistics), removed


def _random_like(shape: tuple[int, ...], stats: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """Normal numbers of the recorded mean and std, within the recorded min and max."""
    low, high, mean, std = stats["min"], stats["max"], stats["mean"], stats["std"]
    values = np.clip(rng.normal(mean, std, size=shape), low, high)
    spread = values.std()
    if values.size > 1 and spread > 0:  # the clip narrows the spread: give it back once, then clip again
        values = np.clip((values - values.mean()) * (std / spread) + mean, low, high)
    return values


def restore(skeleton: onnx.ModelProto, seed: int = 0) -> tuple[onnx.ModelProto, int]:
    """(the full model, tensors filled). The skeleton is not changed."""
    metadata = _metadata(skeleton)
    if SKELETON_KEY not in metadata:
        raise ValueError(f"not a skeleton: no {SKELETON_KEY!r} metadata entry")
    record: dict[str, Any] = json.loads(metadata[SKELETON_KEY])
    if record.get("format") != FORMAT:
        raise ValueError(f"skeleton format {record.get('format')!r}, this tool reads {FORMAT}")
    statistics: dict[str, dict[str, float]] = record["tensors"]
    model = onnx.ModelProto()
    model.CopyFrom(skeleton)
    kept = [entry for entry in model.metadata_props if entry.key != SKELETON_KEY]
    model.ClearField("metadata_props")
    model.metadata_props.extend(kept)
    filled = 0
    for tensor in model.graph.initializer:
        stats = statistics.get(tensor.name)
        if stats is None:
            continue
        rng = np.random.default_rng([seed, zlib.crc32(tensor.name.encode())])
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        values = _random_like(tuple(tensor.dims), stats, rng).astype(dtype)
        doc_string = tensor.doc_string
        tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
        if doc_string:
            tensor.doc_string = doc_string
        filled += 1
    if filled != len(statistics):
        raise ValueError(f"the skeleton records {len(statistics)} tensors, the graph has {filled} of them")
    return model, filled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    strip_parser = commands.add_parser("strip", help="write the skeleton of a model")
    strip_parser.add_argument("model", type=Path)
    strip_parser.add_argument("skeleton", type=Path)
    strip_parser.add_argument("--keep-below", type=int, default=KEEP_BELOW,
                              help=f"float initializers smaller than this many bytes are kept (default {KEEP_BELOW})")
    restore_parser = commands.add_parser("restore", help="write a full model from a skeleton, random weights")
    restore_parser.add_argument("skeleton", type=Path)
    restore_parser.add_argument("model", type=Path)
    restore_parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    if args.command == "strip":
        skeleton, count, removed = strip(onnx.load(str(args.model)), args.keep_below)
        onnx.save(skeleton, str(args.skeleton))
        print(f"{args.skeleton}: {args.skeleton.stat().st_size} bytes ({args.model.stat().st_size} before); "
              f"{count} initializers emptied, {removed} bytes of weights")
    else:
        model, count = restore(onnx.load(str(args.skeleton)), args.seed)
        onnx.save(model, str(args.model))
        onnx.checker.check_model(str(args.model))
        print(f"{args.model}: {args.model.stat().st_size} bytes; {count} initializers filled (seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
