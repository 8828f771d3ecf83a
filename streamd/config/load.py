"""Load and validate a TOML config. Every problem is a ConfigError naming the key; nothing is
started before the whole file has passed."""

from __future__ import annotations

import contextvars
import dataclasses
import difflib
import logging
import math
import os
import re
import sys
import typing
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from streamd.analytics.geometry import MAX_LINES, MAX_ZONES, line_problem, polygon_problem
from streamd.config.schema import (
    ALL_GPUS,
    DEFAULT_PUBLISH_ENDPOINT,
    SINK_CARRIES,
    SINK_KINDS,
    SOURCE_KINDS,
    Config,
    DaemonConfig,
    LineConfig,
    MetricsConfig,
    ModelConfig,
    PreviewConfig,
    PublishConfig,
    SinkConfig,
    SourceConfig,
    TrackingConfig,
    ZoneConfig,
    allowed_values,
)
from streamd.config.subjects import covers, is_subject, is_token, subject_token
from streamd.errors import ConfigError, ConfigFileError

log = logging.getLogger(__name__)

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (JetPack 6)
    import tomli as tomllib

BUILTIN_PREFIX = "builtin:"
_ENDPOINT = re.compile(r"^(tcp://[^:]+:(\d+|\*)|ipc://.+|inproc://.+)$")
_BIND = re.compile(r"^(?P<host>[^:]*|\[[0-9a-fA-F:]+\]):(?P<port>\d+)$")
_MAX_PORT = 65535
MAX_WORKERS = 64
# [model] keys a user writes: `input_size` stands for the dataclass's input_width/input_height.
_MODEL_INTERNAL_KEYS = ("input_width", "input_height", "devices")
_MODEL_USER_KEYS = tuple(sorted({f.name for f in dataclasses.fields(ModelConfig)} - set(_MODEL_INTERNAL_KEYS)
                                | {"input_size"}))
_SOURCE_USER_KEYS = tuple(f.name for f in dataclasses.fields(SourceConfig))
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# Warnings found while a document is parsed, logged only once all of it is valid: a config error is then
# the only line a user sees, not preceded by a remark about a key that was fine.
_PENDING_WARNINGS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("pending_warnings",
                                                                                      default=None)


def _warn_when_valid(message: str) -> None:
    pending = _PENDING_WARNINGS.get()
    if pending is None:
        log.warning("%s", message)
    else:
        pending.append(message)


def unknown_key_reason(key: str, expected: list[str] | tuple[str, ...], what: str = "key") -> str:
    """Why ``key`` is refused: the closest of ``expected`` ("did you mean 'x'?") when one is close, then all."""
    close = difflib.get_close_matches(key, expected, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown {what}; {hint}expected one of {list(expected)}"


def _type_name(kind: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        kind, getattr(kind, "__name__", str(kind)))


def _check_type(key: str, value: Any, kind: Any) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float) and isinstance(value, bool):
        raise ConfigError(key, f"expected {_type_name(kind)}, got {value!r}")
    if kind in (str, int, float, bool):
        if not isinstance(value, kind):
            raise ConfigError(key, f"expected {_type_name(kind)}, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(key, "unsupported value")


def _build(cls: type, table: Any, prefix: str, overrides: Mapping[str, Any] | None = None,
           user_keys: tuple[str, ...] = ()) -> Any:
    """Instantiate dataclass ``cls`` from a TOML table, checking keys and scalar types.

    ``overrides`` are fields filled by the caller (never from the table); ``user_keys``, when
    given, is the key list an unknown-key error shows (what a user may write, not the fields)."""
    if not isinstance(table, dict):
        raise ConfigError(prefix, f"expected a table, got {type(table).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    known = set(fields)
    values: dict[str, Any] = {}
    for key, value in table.items():
        full_key = f"{prefix}.{key}"
        if key not in known or key in (overrides or {}):
            expected = list(user_keys) or sorted(known - set(overrides or {}))
            raise ConfigError(full_key, unknown_key_reason(key, expected))
        values[key] = _check_type(full_key, value, hints[key])
        allowed = allowed_values(fields[key].metadata)
        if allowed and values[key] not in allowed:
            raise ConfigError(full_key, f"'{values[key]}' is not one of {list(allowed)}")
    values.update(overrides or {})
    for f in dataclasses.fields(cls):
        if f.name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{prefix}.{f.name}", "required key is missing")
    return cls(**values)


def _resolve(path_text: str, base_dir: Path) -> Path:
    """An absolute, normalised path (``configs/../x`` -> ``x``; symlinks are kept as written)."""
    path = Path(path_text).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else (base_dir / path).absolute()))


def _load_classes(value: Any, base_dir: Path, model_path: Path) -> tuple[str, ...]:
    key = "model.classes"
    if value is None:
        for candidate in (model_path.with_suffix(".names"), model_path.parent / "classes.txt"):
            if candidate.is_file():
                value = str(candidate)
                break
        else:
            return _default_classes(model_path)
    if isinstance(value, list):
        if not value or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(key, "expected a non-empty list of class names")
        return tuple(value)
    if isinstance(value, str):
        classes_path = _resolve(value, base_dir)
        if not classes_path.is_file():
            raise ConfigError(key, f"class-name file {classes_path} does not exist")
        names = tuple(line.strip() for line in classes_path.read_text().splitlines() if line.strip())
        if not names:
            raise ConfigError(key, f"class-name file {classes_path} is empty")
        return names
    raise ConfigError(key, f"expected a list of names or a file path, got {type(value).__name__}")


def _default_classes(model_path: Path) -> tuple[str, ...]:
    """No names given and no names file beside the model: the names the export's metadata holds, else
    COCO's when the model has 80 classes (every official YOLOX export), else an error asking for them."""
    from streamd.config.coco import COCO_CLASSES, model_class_count  # noqa: PLC0415
    from streamd.yolox.metadata import read_metadata  # noqa: PLC0415

    names = read_metadata(model_path).names
    if names:  # the export's own class names (Ultralytics writes them)
        return names
    count = model_class_count(model_path)
    if count == len(COCO_CLASSES):
        # A guess, if a good one (every official YOLOX export): said at WARNING, once, at start-up.
        _warn_when_valid(f"model.classes not set and no {model_path.with_suffix('.names').name} or classes.txt "
                         f"beside {model_path}: the model has 80 classes, using the COCO class names")
        return COCO_CLASSES
    found = f"the model has {count} classes" if count else "the class count cannot be read from the model"
    raise ConfigError("model.classes", f"required key is missing: {found} and there is no "
                                       f"{model_path.with_suffix('.names').name} or classes.txt beside it "
                                       "(give a list of names or a file with one name a line)")


def _model(table: Any, base_dir: Path) -> ModelConfig:
    if not isinstance(table, dict):
        raise ConfigError("model", "expected a table")
    table = dict(table)
    for key in _MODEL_INTERNAL_KEYS:
        if key in table:
            raise ConfigError(f"model.{key}", f"unknown key; expected one of {list(_MODEL_USER_KEYS)} "
                                              "(the input size is input_size = [width, height])")
    path_text = table.pop("path", None)
    if path_text is None:
        raise ConfigError("model.path", "required key is missing")
    _check_type("model.path", path_text, str)
    classes_value = table.pop("classes", None)
    device_overrides = _devices(table.pop("device", 0))
    input_size = table.pop("input_size", None)
    size_overrides: dict[str, int] = {}
    if input_size is not None:
        if (not isinstance(input_size, list) or len(input_size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in input_size)):
            raise ConfigError("model.input_size", f"expected [width, height] positive integers, got {input_size!r}")
        size_overrides = {"input_width": input_size[0], "input_height": input_size[1]}
    if path_text.startswith(BUILTIN_PREFIX):
        from streamd.models import builtin_model  # noqa: PLC0415 - only for builtin models

        builtin = builtin_model(path_text[len(BUILTIN_PREFIX):])  # raises ConfigError
        model_path, default_classes = builtin.onnx_path, builtin.classes
    else:
        model_path, default_classes = _resolve(path_text, base_dir), None
        if not model_path.is_file():
            raise ConfigError("model.path", f"model file {model_path} does not exist")
    classes = (_load_classes(classes_value, base_dir, model_path)
               if classes_value is not None or default_classes is None else default_classes)
    model = _build(ModelConfig, table, "model", {"path": str(model_path), "classes": classes, **size_overrides,
                                                 **device_overrides}, user_keys=_MODEL_USER_KEYS)
    _validate_model(model)
    return model


def _devices(value: Any) -> dict[str, Any]:
    """``model.device``: a GPU number, a list of them (a GPU listed twice gets two workers at least), or
    ``"all"``; the workers spread over them."""
    if value == "all":
        return {"device": 0, "devices": (ALL_GPUS,)}
    if isinstance(value, list):
        if not value or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
            raise ConfigError("model.device", f"expected GPU numbers (0 or more), got {value!r}")
        return {"device": value[0], "devices": tuple(value)}
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError("model.device", f"expected a GPU number, a list of them or \"all\", got {value!r}")
    if value < 0:
        raise ConfigError("model.device", f"must be 0 or more, got {value}")
    return {"device": value, "devices": ()}


def _validate_model(model: ModelConfig) -> None:
    for key in ("score_threshold", "nms_threshold"):
        value = getattr(model, key)
        if not 0.0 < value < 1.0:
            raise ConfigError(f"model.{key}", f"must be between 0 and 1, got {value}")
    if model.max_detections < 1:
        raise ConfigError("model.max_detections", "must be at least 1")
    if model.workers < 0:
        raise ConfigError("model.workers", "must be 0 (auto) or more")
    if model.threads < 0:
        raise ConfigError("model.threads", "must be 0 (backend default) or more")
    if model.max_batch < 1:
        raise ConfigError("model.max_batch", "must be 1 (no batching) or more")
    if model.batch_window_seconds < 0:
        raise ConfigError("model.batch_window_seconds", "must not be negative")
    if model.device < 0:
        raise ConfigError("model.device", "must be a CUDA device number, 0 or more")


def _check_device_frame_sources(sources: tuple[SourceConfig, ...], model: ModelConfig) -> None:
    """NVDEC frames stay in GPU memory: only the batched GPU detector reads them. Backend "auto" is
    checked at start-up instead (it depends on the machine)."""
    for index, source in enumerate(sources):
        if source.decoder != "nvdec":
            continue
        if model.backend == "onnxruntime":
            raise ConfigError(f"sources[{index}].decoder",
                              "'nvdec' keeps frames in GPU memory, which ONNX Runtime cannot read: set "
                              "model.backend = \"tensorrt\" (the GPU path) with model.max_batch >= 2, or "
                              "decoder = \"opencv\"")
        if model.max_batch < 2:
            raise ConfigError(f"sources[{index}].decoder",
                              "'nvdec' frames are read by the batched GPU detector: set model.max_batch >= 2 "
                              "(max_batch = 1 runs the single-frame GPU detector, which takes host frames), "
                              "or decoder = \"opencv\"")


def _source(table: Any, index: int, base_dir: Path) -> SourceConfig:
    prefix = f"sources[{index}]"
    if isinstance(table, dict) and "kind" in table and table["kind"] not in SOURCE_KINDS:
        raise ConfigError(f"{prefix}.kind",
                          f"unknown source kind '{table['kind']}', expected one of {list(SOURCE_KINDS)}")
    analytics: dict[str, Any] = {}
    if isinstance(table, dict):  # [[sources.zones]], [[sources.lines]]: tables of their own (the document is kept)
        analytics = {"zones": _zones(table.get("zones", []), prefix), "lines": _lines(table.get("lines", []), prefix)}
        _check_names(analytics["zones"], analytics["lines"], prefix)
        table = {key: value for key, value in table.items() if key not in analytics}
    source = _build(SourceConfig, table, prefix, analytics, user_keys=_SOURCE_USER_KEYS)
    for field in dataclasses.fields(SourceConfig):
        kinds = field.metadata.get("kinds", ())
        if field.name in table and kinds and source.kind not in kinds:
            raise ConfigError(f"{prefix}.{field.name}", f"applies to {', '.join(kinds)} sources, not {source.kind}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", source.id):
        raise ConfigError(f"{prefix}.id", f"'{source.id}' must be letters, digits, '_', '.', '-' "
                                          "(it is a ZeroMQ topic and a metric label)")
    if source.kind in ("file", "image"):
        if not source.url:
            raise ConfigError(f"{prefix}.url", f"required for a {source.kind} source")
        # A missing or unreadable file is not a config error: like a dead camera, the source retries
        # (the file may be mounted or copied later) and the other sources keep running.
        source = dataclasses.replace(source, url=str(_resolve(source.url, base_dir)))
    if source.kind == "rtsp":
        if not source.url.startswith(("rtsp://", "rtsps://")):
            raise ConfigError(f"{prefix}.url", f"expected an rtsp:// URL, got '{source.url}'")
        for key in ("open_timeout_seconds", "read_timeout_seconds", "stall_timeout_seconds"):
            if getattr(source, key) <= 0:  # 0 would mean FFmpeg's 30 s default or a watchdog that fires at once
                raise ConfigError(f"{prefix}.{key}", "must be more than 0 for an rtsp source")
        if source.backoff_max_seconds < source.backoff_initial_seconds:
            raise ConfigError(f"{prefix}.backoff_max_seconds", f"must be at least backoff_initial_seconds "
                                                               f"({source.backoff_initial_seconds:g})")
    for key in ("fps", "open_timeout_seconds", "read_timeout_seconds", "stall_timeout_seconds",
                "backoff_initial_seconds", "backoff_max_seconds"):
        if getattr(source, key) < 0:
            raise ConfigError(f"{prefix}.{key}", "must not be negative")
    if source.decode_threads < 0:
        raise ConfigError(f"{prefix}.decode_threads", "must be 0 (FFmpeg's choice) or more")
    if source.max_pixels < 0:
        raise ConfigError(f"{prefix}.max_pixels", "must be 0 (no limit) or more")
    for key in ("width", "height"):
        if getattr(source, key) < 32:
            raise ConfigError(f"{prefix}.{key}", "must be at least 32")
    return source


def parse_config(document: Mapping[str, Any], base_dir: Path | str = ".", path: str = "") -> Config:
    """Validate an already-parsed TOML document; relative paths resolve against ``base_dir``. Warnings
    (COCO names guessed) are logged only when the whole document is valid."""
    pending: list[str] = []
    token = _PENDING_WARNINGS.set(pending)
    try:
        config = _parse_config(document, base_dir, path)
    finally:
        _PENDING_WARNINGS.reset(token)
    for message in pending:
        log.warning("%s", message)
    return config


def _parse_config(document: Mapping[str, Any], base_dir: Path | str, path: str) -> Config:
    base_dir = Path(base_dir)
    known = {"sources", "model", "publish", "metrics", "daemon", "preview", "tracking", "sinks"}
    for key in document:
        if key not in known:
            raise ConfigError(key, unknown_key_reason(key, sorted(known), "section"))
    if "sources" not in document:
        raise ConfigError("sources", "required: at least one [[sources]] table")
    raw_sources = document["sources"]
    if not isinstance(raw_sources, list) or not raw_sources:
        raise ConfigError("sources", "expected at least one [[sources]] table")
    sources = tuple(_source(table, i, base_dir) for i, table in enumerate(raw_sources))
    seen: set[str] = set()
    for i, source in enumerate(sources):
        if source.id in seen:
            raise ConfigError(f"sources[{i}].id", f"duplicate source id '{source.id}'")
        seen.add(source.id)
    if "model" not in document:
        raise ConfigError("model", "required section [model] is missing")
    model = _model(document["model"], base_dir)
    _check_device_frame_sources(sources, model)
    _check_analytics_classes(sources, model)
    publish = _build(PublishConfig, document.get("publish", {}), "publish")
    check_endpoint(publish.endpoint, "publish.endpoint")
    if publish.send_hwm < 1:
        raise ConfigError("publish.send_hwm", "must be at least 1")
    if publish.wait_for_subscriber_seconds < 0:
        raise ConfigError("publish.wait_for_subscriber_seconds", "must not be negative")
    publish = _curve_keys(publish, base_dir)
    metrics = _build(MetricsConfig, document.get("metrics", {}), "metrics")
    split_bind(metrics.bind)  # raises ConfigError
    daemon_table = document.get("daemon", {})
    workers = _workers(daemon_table.get("workers", "auto") if isinstance(daemon_table, dict) else "auto")
    if isinstance(daemon_table, dict):
        daemon_table = {key: value for key, value in daemon_table.items() if key != "workers"}
    daemon = _build(DaemonConfig, daemon_table, "daemon", overrides={"workers": workers},
                    user_keys=tuple(sorted(f.name for f in dataclasses.fields(DaemonConfig))))
    if daemon.status_interval_seconds < 0:
        raise ConfigError("daemon.status_interval_seconds", "must be 0 (off) or more")
    preview = _preview(document.get("preview", {}))
    tracking = _tracking(document.get("tracking", {}))
    for i, source in enumerate(sources):
        if source.lines and not tracking.enabled:
            raise ConfigError(f"sources[{i}].lines", "a crossing is a tracked object's: lines need [tracking] "
                                                     "enabled = true")
    sinks = _sinks(document.get("sinks", []), sources, model, base_dir)
    return Config(sources, model, publish, metrics, daemon, path, preview=preview, tracking=tracking, sinks=sinks)


def _workers(value: Any) -> int | str:
    """``daemon.workers``: ``"auto"`` or a whole number of processes, 1 to MAX_WORKERS."""
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError("daemon.workers", f"expected a number of processes or \"auto\", got {value!r}")
    if not 1 <= value <= MAX_WORKERS:
        raise ConfigError("daemon.workers", f"must be 1 to {MAX_WORKERS}, got {value}")
    return value


def _preview(table: Any) -> PreviewConfig:
    preview = _build(PreviewConfig, table, "preview")
    split_bind(preview.bind, "preview.bind")  # raises ConfigError
    if not 0 < preview.fps <= 60:
        raise ConfigError("preview.fps", f"must be more than 0 and at most 60, got {preview.fps:g}")
    if preview.max_width < 32:
        raise ConfigError("preview.max_width", "must be at least 32 pixels")
    if not 1 <= preview.jpeg_quality <= 100:
        raise ConfigError("preview.jpeg_quality", f"must be 1 to 100, got {preview.jpeg_quality}")
    if preview.max_viewers < 1:
        raise ConfigError("preview.max_viewers", "must be at least 1")
    if preview.client_timeout_seconds <= 0:
        raise ConfigError("preview.client_timeout_seconds", "must be more than 0")
    return preview


def _curve_keys(publish: PublishConfig, base_dir: Path) -> PublishConfig:
    """Both CURVE keys or neither; the secret key file must hold a key pair and the folder exist."""
    from streamd.publish.curve import KeyFileError, check_authorized_keys_folder, load_key_pair  # noqa: PLC0415

    if not publish.curve_secret_key and not publish.curve_authorized_keys:
        return publish
    for key, missing in (("curve_secret_key", "the folder of authorised subscriber keys is set"),
                         ("curve_authorized_keys", "the secret key is set")):
        if not getattr(publish, key):
            raise ConfigError(f"publish.{key}", f"required when {missing} (CURVE needs both)")
    secret_key = str(_resolve(publish.curve_secret_key, base_dir))
    authorized_keys = str(_resolve(publish.curve_authorized_keys, base_dir))
    for key, check in (("curve_secret_key", lambda: load_key_pair(secret_key)),
                       ("curve_authorized_keys", lambda: check_authorized_keys_folder(authorized_keys))):
        try:
            check()
        except KeyFileError as error:
            raise ConfigError(f"publish.{key}", str(error)) from error
    return dataclasses.replace(publish, curve_secret_key=secret_key, curve_authorized_keys=authorized_keys)


def read_document(path: str | Path) -> tuple[dict[str, Any], Path, str]:
    """The TOML document of a config file, the folder its relative paths resolve against, and its
    name as messages show it."""
    config_path = Path(os.path.normpath(path))  # as given, without "a/../" (messages show it)
    try:
        text = config_path.read_text()
    except OSError as error:
        raise ConfigFileError(f"cannot read config file {config_path}: {error.strerror}") from error
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigFileError(f"config file {config_path} is not valid TOML: {error}") from error
    return document, config_path.resolve().parent, str(config_path)


def load_config(path: str | Path) -> Config:
    document, base_dir, name = read_document(path)
    return parse_config(document, base_dir, name)


def check_endpoint(endpoint: str, key: str) -> None:
    """ConfigError (naming ``key``) unless ``endpoint`` is a ZeroMQ endpoint with a port in range."""
    if not _ENDPOINT.match(endpoint):
        raise ConfigError(key, f"'{endpoint}' is not a ZeroMQ endpoint like {DEFAULT_PUBLISH_ENDPOINT}")
    port_text = endpoint.rsplit(":", 1)[-1] if endpoint.startswith("tcp://") else "*"
    if port_text != "*" and not 0 < int(port_text) <= _MAX_PORT:
        raise ConfigError(key, f"port {port_text} is out of range (1-{_MAX_PORT})")


def split_bind(bind: str, key: str = "metrics.bind") -> tuple[str, int]:
    match = _BIND.match(bind)
    if not match:
        raise ConfigError(key, f"'{bind}' is not HOST:PORT")
    port = int(match.group("port"))
    if port > _MAX_PORT:
        raise ConfigError(key, f"port {port} is out of range (0-{_MAX_PORT}; 0 picks a free one)")
    return match.group("host").strip("[]") or "127.0.0.1", port


def _tracking(table: Any) -> TrackingConfig:
    tracking = _build(TrackingConfig, table, "tracking")
    for key in ("high_score_threshold", "new_track_score_threshold", "match_iou_threshold"):
        if not 0.0 < getattr(tracking, key) < 1.0:
            raise ConfigError(f"tracking.{key}", f"must be between 0 and 1, got {getattr(tracking, key):g}")
    if tracking.new_track_score_threshold < tracking.high_score_threshold:
        raise ConfigError("tracking.new_track_score_threshold",
                          f"must be at least high_score_threshold ({tracking.high_score_threshold:g}): only "
                          "high-score detections start tracks")
    if tracking.lost_track_buffer_frames < 0:
        raise ConfigError("tracking.lost_track_buffer_frames", "must be 0 (no lost tracks) or more")
    return tracking



# -- analytics: [[sources.zones]] and [[sources.lines]] ----------------------------------------------
def _table_list(value: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(table, dict) for table in value):
        kind = key.rsplit(".", 1)[-1]
        raise ConfigError(key, f"expected [[sources.{kind}]] tables, got {type(value).__name__} {value!r}")
    return value


def _points(value: Any, key: str, units: str) -> tuple[tuple[float, float], ...]:
    """``[[x, y], ...]`` as floats: numbers, finite, and between 0 and 1 in ``fractions``."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 and all(number(v) for v in p)
                                              for p in value):
        raise ConfigError(key, f"expected a list of [x, y] number pairs, got {value!r}")
    points = tuple((float(x), float(y)) for x, y in value)
    if units == "fractions":
        for i, (x, y) in enumerate(points):
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ConfigError(key, f"point {i + 1} [{x:g}, {y:g}] is outside 0-1, but units = \"fractions\" "
                                       "(fractions of the frame's width and height)")
    return points


def _class_names(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(name, str) and name for name in value):
        raise ConfigError(key, f"expected a list of class names, got {value!r}")
    return tuple(value)


def _analytics_table(cls: type, table: dict[str, Any], key: str, points_key: str) -> Any:
    """A zone or line table: its points and classes read here, the plain keys by ``_build``."""
    units = table.get("units", "pixels")
    if points_key not in table:
        raise ConfigError(f"{key}.{points_key}", "required key is missing")
    overrides = {points_key: _points(table[points_key], f"{key}.{points_key}", units if isinstance(units, str) else ""),
                 "classes": _class_names(table.get("classes", []), f"{key}.classes")}
    rest = {name: value for name, value in table.items() if name not in overrides}
    item = _build(cls, rest, key, overrides, user_keys=tuple(f.name for f in dataclasses.fields(cls)))
    if not _NAME.fullmatch(item.name):
        raise ConfigError(f"{key}.name", f"'{item.name}' must be letters, digits, '_', '.', '-' (it is a metric "
                                         "label)")
    return item


def _zones(value: Any, prefix: str) -> tuple[ZoneConfig, ...]:
    tables = _table_list(value, f"{prefix}.zones")
    if len(tables) > MAX_ZONES:
        raise ConfigError(f"{prefix}.zones", f"at most {MAX_ZONES} zones a source, got {len(tables)}")
    zones = []
    for index, table in enumerate(tables):
        key = f"{prefix}.zones[{index}]"
        zone = _analytics_table(ZoneConfig, table, key, "polygon")
        problem = polygon_problem(zone.polygon)
        if problem:
            raise ConfigError(f"{key}.polygon", f"the polygon {problem}")
        if zone.min_frames < 1:
            raise ConfigError(f"{key}.min_frames", f"must be at least 1, got {zone.min_frames}")
        for name in ("dwell_seconds", "hold_seconds", "max_objects"):
            if getattr(zone, name) < 0:
                raise ConfigError(f"{key}.{name}", "must not be negative")
        zones.append(zone)
    return tuple(zones)


def _lines(value: Any, prefix: str) -> tuple[LineConfig, ...]:
    tables = _table_list(value, f"{prefix}.lines")
    if len(tables) > MAX_LINES:
        raise ConfigError(f"{prefix}.lines", f"at most {MAX_LINES} lines a source, got {len(tables)}")
    lines = []
    for index, table in enumerate(tables):
        key = f"{prefix}.lines[{index}]"
        line = _analytics_table(LineConfig, table, key, "points")
        problem = line_problem(line.points)
        if problem:
            raise ConfigError(f"{key}.points", f"the line {problem}")
        if line.margin_px < 0:
            raise ConfigError(f"{key}.margin_px", "must not be negative")
        lines.append(line)
    return tuple(lines)


def _check_names(zones: tuple[ZoneConfig, ...], lines: tuple[LineConfig, ...], prefix: str) -> None:
    seen: dict[str, str] = {}
    for kind, items in (("zones", zones), ("lines", lines)):
        for index, item in enumerate(items):
            key = f"{prefix}.{kind}[{index}].name"
            if item.name in seen:
                raise ConfigError(key, f"'{item.name}' is taken by {seen[item.name]}: names are unique among a "
                                       "source's zones and lines")
            seen[item.name] = key.rsplit(".", 1)[0]


def _check_analytics_classes(sources: tuple[SourceConfig, ...], model: ModelConfig) -> None:
    """Every class a zone or line names is one of the model's."""
    for i, source in enumerate(sources):
        for kind, items in (("zones", source.zones), ("lines", source.lines)):
            for j, item in enumerate(items):
                for name in item.classes:
                    if name not in model.classes:
                        close = difflib.get_close_matches(name, model.classes, n=1)
                        hint = f"did you mean '{close[0]}'?" if close else "see model.classes"
                        raise ConfigError(f"sources[{i}].{kind}[{j}].classes",
                                          f"'{name}' is not one of the model's classes; {hint}")


# -- [[sinks]] ---------------------------------------------------------------------------------------
def _sinks(value: Any, sources: tuple[SourceConfig, ...], model: ModelConfig, base_dir: Path) -> tuple[SinkConfig, ...]:
    if not isinstance(value, list) or not all(isinstance(table, dict) for table in value):
        raise ConfigError("sinks", f"expected [[sinks]] tables, got {type(value).__name__}")
    sinks: list[SinkConfig] = []
    source_ids = [source.id for source in sources]
    for index, table in enumerate(value):
        prefix = f"sinks[{index}]"
        if "kind" not in table:
            raise ConfigError(f"{prefix}.kind", f"required key is missing; one of {list(SINK_KINDS)}")
        lists = {key: _string_list(table[key], f"{prefix}.{key}")
                 for key in ("carries", "sources", "classes", "servers", "stream_subjects") if key in table}
        sink = _build(SinkConfig, {k: v for k, v in table.items() if k not in lists}, prefix, overrides=lists,
                      user_keys=tuple(f.name for f in dataclasses.fields(SinkConfig)))
        for setting_field in dataclasses.fields(SinkConfig):
            kinds = setting_field.metadata.get("kinds", ())
            if setting_field.name in table and kinds and sink.kind not in kinds:
                raise ConfigError(f"{prefix}.{setting_field.name}", f"applies to {', '.join(kinds)} sinks, not "
                                                                    f"{sink.kind}")
        if not sink.name:
            sink = dataclasses.replace(sink, name=f"{sink.kind}-{index}")
        if not _NAME.fullmatch(sink.name):
            raise ConfigError(f"{prefix}.name", f"'{sink.name}' must be letters, digits, '_', '.', '-'")
        if sink.name in {other.name for other in sinks}:
            raise ConfigError(f"{prefix}.name", f"'{sink.name}' is the name of another sink")
        for item in sink.carries:
            if item not in SINK_CARRIES:
                raise ConfigError(f"{prefix}.carries", f"'{item}' is not one of {list(SINK_CARRIES)}")
        if not sink.carries:
            raise ConfigError(f"{prefix}.carries", f"carries nothing: name some of {list(SINK_CARRIES)}")
        for source_id in sink.sources:
            # A worker process holds some of the sources; the supervisor checked the whole config.
            if source_id not in source_ids and not os.environ.get("STREAMD_WORKER"):
                raise ConfigError(f"{prefix}.sources", unknown_key_reason(source_id, source_ids, "source id"))
        for name in sink.classes:
            if name not in model.classes:
                raise ConfigError(f"{prefix}.classes", unknown_key_reason(name, list(model.classes), "class"))
        if (sink.sources or sink.classes) and "detections" not in sink.carries:
            raise ConfigError(f"{prefix}.sources" if sink.sources else f"{prefix}.classes",
                              "filters detections, but carries has no \"detections\"")
        if not sink.host:
            raise ConfigError(f"{prefix}.host", "required: the broker's host name or address")
        if not 0 <= sink.port <= _MAX_PORT:
            raise ConfigError(f"{prefix}.port", f"port {sink.port} is out of range (0-{_MAX_PORT}; 0: the default)")
        if sink.qos not in (0, 1):
            raise ConfigError(f"{prefix}.qos", f"must be 0 or 1, got {sink.qos}")
        if sink.buffer_messages < 1:
            raise ConfigError(f"{prefix}.buffer_messages", "must be at least 1")
        if not 5 <= sink.keepalive_seconds <= 3600:
            raise ConfigError(f"{prefix}.keepalive_seconds", f"must be 5 to 3600, got {sink.keepalive_seconds}")
        for key in ("node", "discovery_prefix"):
            text = getattr(sink, key)
            if any(c in text for c in "/+#") or (key == "discovery_prefix" and not text):
                raise ConfigError(f"{prefix}.{key}", f"'{text}' must be one MQTT topic level: not empty, no '/', "
                                                     "'+' or '#'")
        if sink.kind == "webhook":
            sink = _webhook(sink, table, prefix, base_dir)
        if sink.kind == "nats":
            sink = _nats(sink, table, prefix, sources)
        if sink.buffer_path:
            folder = _resolve(sink.buffer_path, base_dir)
            if folder.exists() and not folder.is_dir():
                raise ConfigError(f"{prefix}.buffer_path", f"{folder} is not a folder")
            sink = dataclasses.replace(sink, buffer_path=str(folder))
        if sink.password and sink.password_file:
            raise ConfigError(f"{prefix}.password_file", "set password or password_file, not both")
        if sink.ca_file and not sink.tls:
            raise ConfigError(f"{prefix}.ca_file", "is read only with an https:// url" if sink.kind == "webhook"
                              else "is read only with tls = true")
        if sink.ca_file:
            ca_file = _resolve(sink.ca_file, base_dir)
            if not ca_file.is_file():
                raise ConfigError(f"{prefix}.ca_file", f"{ca_file} does not exist")
            sink = dataclasses.replace(sink, ca_file=str(ca_file))
        if sink.password_file:
            password_file = _resolve(sink.password_file, base_dir)
            try:
                lines = password_file.read_text().splitlines()
            except OSError as error:
                raise ConfigError(f"{prefix}.password_file", f"cannot read {password_file}: {error}") from error
            if not lines or not lines[0]:
                raise ConfigError(f"{prefix}.password_file", f"{password_file} holds no password on its first line")
            sink = dataclasses.replace(sink, password_file=str(password_file), password=lines[0])
        if sink.password and not sink.username:
            raise ConfigError(f"{prefix}.username", "required with a password")
        sinks.append(sink)
    return tuple(sinks)


def _webhook(sink: SinkConfig, table: dict[str, Any], prefix: str, base_dir: Path) -> SinkConfig:
    """A webhook sink's url and secret checked, its secret file read; ``tls`` follows the URL's scheme."""
    for key in ("host", "port", "tls"):
        if key in table:
            raise ConfigError(f"{prefix}.{key}", "a webhook's address is its url (https:// verifies the server's "
                                                 "certificate)")
    if not sink.url:
        raise ConfigError(f"{prefix}.url", "required: the http:// or https:// URL to POST to")
    try:
        url = urllib.parse.urlsplit(sink.url)
        url.port  # noqa: B018 (raises ValueError for a port that is not a number or out of range)
    except ValueError as error:
        raise ConfigError(f"{prefix}.url", f"'{sink.url}' is not a URL: {error}") from error
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError(f"{prefix}.url", f"'{sink.url}' must be http://HOST/... or https://HOST/...")
    if url.username is not None or url.password is not None:
        raise ConfigError(f"{prefix}.url", "holds credentials: set username and password_file instead (log lines "
                                           "show the url)")
    if sink.secret and sink.secret_file:
        raise ConfigError(f"{prefix}.secret_file", "set secret or secret_file, not both")
    if sink.secret_file:
        secret_file = _resolve(sink.secret_file, base_dir)
        try:
            lines = secret_file.read_text().splitlines()
        except OSError as error:
            raise ConfigError(f"{prefix}.secret_file", f"cannot read {secret_file}: {error}") from error
        if not lines or not lines[0]:
            raise ConfigError(f"{prefix}.secret_file", f"{secret_file} holds no secret on its first line")
        sink = dataclasses.replace(sink, secret_file=str(secret_file), secret=lines[0])
    if not sink.secret:
        raise ConfigError(f"{prefix}.secret", "required: the key that signs each request (or secret_file)")
    if not 0 < sink.timeout_seconds <= 300:
        raise ConfigError(f"{prefix}.timeout_seconds", f"must be more than 0 and at most 300, got "
                                                       f"{sink.timeout_seconds}")
    return dataclasses.replace(sink, tls=url.scheme == "https")


def _nats(sink: SinkConfig, table: dict[str, Any], prefix: str, sources: tuple[SourceConfig, ...]) -> SinkConfig:
    """A NATS sink's servers, subjects and stream checked; ``tls`` on when a server is ``tls://``."""
    for key in ("host", "port"):
        if key in table:
            raise ConfigError(f"{prefix}.{key}", "a NATS sink's addresses are its servers (nats://HOST:PORT)")
    if not sink.servers:
        raise ConfigError(f"{prefix}.servers", "required: at least one nats://HOST:PORT")
    for server in sink.servers:
        try:
            url = urllib.parse.urlsplit(server)
            url.port  # noqa: B018 (raises ValueError for a port that is not a number or out of range)
        except ValueError as error:
            raise ConfigError(f"{prefix}.servers", f"'{server}' is not a URL: {error}") from error
        if url.scheme not in ("nats", "tls") or not url.hostname:
            raise ConfigError(f"{prefix}.servers", f"'{server}' must be nats://HOST:PORT or tls://HOST:PORT")
        if url.username is not None or url.password is not None:
            raise ConfigError(f"{prefix}.servers", "holds credentials: set username and password_file instead (log "
                                                   "lines show the servers)")
    if not is_subject(sink.subject_prefix, wildcards=False):
        raise ConfigError(f"{prefix}.subject_prefix", f"'{sink.subject_prefix}' must be subject tokens joined by '.', "
                                                      "without '*', '>' or spaces")
    if sink.node and not is_token(sink.node):
        raise ConfigError(f"{prefix}.node", f"'{sink.node}' must be one NATS subject token: no '.', '*', '>' or "
                                            "spaces")
    if not sink.stream or any(c in sink.stream for c in ".*>/\\ \t"):
        raise ConfigError(f"{prefix}.stream", f"'{sink.stream}' must be a JetStream stream name: not empty, no '.', "
                                              "'*', '>', '/', '\\' or spaces")
    publishes = f"{sink.subject_prefix}.{sink.node or '*'}.*.*"
    for subject in sink.stream_subjects:
        if not is_subject(subject):
            raise ConfigError(f"{prefix}.stream_subjects", f"'{subject}' is not a NATS subject filter")
    if sink.stream_subjects and not any(covers(subject, publishes) for subject in sink.stream_subjects):
        raise ConfigError(f"{prefix}.stream_subjects", f"{list(sink.stream_subjects)} do not take the subjects the "
                                                       f"sink publishes ({publishes})")
    if sink.max_age_seconds < 0:
        raise ConfigError(f"{prefix}.max_age_seconds", f"must be 0 (no limit) or more, got {sink.max_age_seconds}")
    if sink.max_bytes < 0:
        raise ConfigError(f"{prefix}.max_bytes", f"must be 0 (no limit) or more, got {sink.max_bytes}")
    if sink.duplicate_window_seconds <= 0:
        raise ConfigError(f"{prefix}.duplicate_window_seconds", f"must be more than 0, got "
                                                                f"{sink.duplicate_window_seconds}")
    if sink.max_age_seconds and sink.duplicate_window_seconds > sink.max_age_seconds:
        raise ConfigError(f"{prefix}.duplicate_window_seconds", f"{sink.duplicate_window_seconds:g} s is longer than "
                                                                f"max_age_seconds ({sink.max_age_seconds:g} s)")
    tokens: dict[str, str] = {}
    for index, source in enumerate(sources):  # a source id is one subject token: '.' becomes '_'
        other = tokens.setdefault(subject_token(source.id), source.id)
        if other != source.id:
            raise ConfigError(f"sources[{index}].id", f"'{source.id}' and '{other}' are one NATS subject token "
                                                      f"('{subject_token(source.id)}') for {prefix}; rename one")
    return dataclasses.replace(sink, tls=sink.tls or any(s.startswith("tls://") for s in sink.servers))


def _string_list(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(key, f"expected a list of strings, got {value!r}")
    return tuple(value)
