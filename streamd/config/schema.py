"""The configuration's shape, and the single source of truth for it: every key's default, what it
means, the values it allows and the source kinds it applies to. Validation (load.py), the configuration
reference docs/configuration.md (reference.py renders it; a test compares) and ``configs/example.toml``
(a test checks its keys) all read it from here.

Allowed values that other modules define (backends, precisions, layouts, preprocessing conventions)
are named here as ``"module:ATTRIBUTE"`` and read from that registry only when a config is validated
or the reference rendered: ``import streamd.config`` stays light, and the registries, which build
from these dataclasses, do not import back into a circle.
"""

from __future__ import annotations

import importlib
from dataclasses import MISSING, dataclass, field
from typing import Any

DEFAULT_PUBLISH_ENDPOINT = "tcp://127.0.0.1:5555"
DEFAULT_METRICS_BIND = "127.0.0.1:9400"
DEFAULT_PREVIEW_BIND = "127.0.0.1:9401"
# A few hundred messages cover a burst from several cameras; past that a slow subscriber loses
# messages (counted) rather than growing memory or blocking the pipeline.
DEFAULT_SEND_HWM = 200

SOURCE_KINDS = ("file", "image", "rtsp", "synthetic")
LOG_LEVELS = ("debug", "info", "warning", "error")
# Who decodes a file or rtsp source: OpenCV/FFmpeg on the CPU, NVDEC on the GPU (PyNvVideoCodec,
# frames stay in device memory; streamd.sources.nvdec), or a GStreamer pipeline ("jetson":
# nvv4l2decoder on a Jetson, avdec_h264 elsewhere; host BGR frames; streamd.sources.gstreamer).
# "auto": "jetson" on a Jetson whose GStreamer has nvv4l2decoder, "opencv" anywhere else.
SOURCE_DECODERS = ("opencv", "nvdec", "jetson", "auto")
# model.zero_copy: frames read in place from mapped host memory by the GPU path. "auto": on an
# integrated GPU (Jetson) only; "on": forced, also on a discrete GPU (slower there: to test the path).
ZERO_COPY_MODES = ("auto", "on", "off")
PACES = ("native", "fast")
RTSP_TRANSPORTS = ("tcp", "udp")
# sources[].max_pixels: an 8K x 8K picture (192 MB as BGR) is the largest a source delivers by default.
DEFAULT_MAX_PIXELS = 8192 * 8192
# The longest a detector batch waits for more frames after its first one (see ModelConfig.max_batch).
DEFAULT_BATCH_WINDOW_SECONDS = 0.020

# model.device = "all": every GPU the service can see, counted when it starts.
ALL_GPUS = -1
# Registries of allowed values defined elsewhere, read on use (see the module docstring).
BACKENDS = "streamd.inference.registry:BACKENDS"
PRECISIONS = "streamd.inference.tensorrt_build:PRECISIONS"
CONVENTIONS = "streamd.yolox.preprocess:CONVENTIONS"
LAYOUTS = "streamd.yolox.decoders:LAYOUTS"

# Analytics (streamd.analytics): the point of a box that zones and lines look at, how coordinates are
# written, and which side of a line (seen from its first point towards its second) is "in".
ANCHORS = "streamd.analytics.geometry:ANCHORS"
UNITS = ("pixels", "fractions")
LINE_SIDES = ("left", "right")

_LIVE = ("rtsp",)
_READ = ("file", "image", "synthetic")  # the kinds the plain capture loop reads (paced, looped, counted)


def setting(default: Any = MISSING, doc: str = "", *, choices: tuple[str, ...] | str = (),
            extra_choices: tuple[str, ...] = (), kinds: tuple[str, ...] = (), shown: str = "", key: str = "") -> Any:
    """A config key. ``doc``: what it does (markdown, the reference's "meaning" column); ``choices``: the
    allowed values, or a ``"module:ATTRIBUTE"`` registry (its keys, or its items), with
    ``extra_choices`` allowed before them ("auto"); ``kinds``: the source kinds it applies to (empty:
    all); ``shown``: the default as the reference shows it, when not the value itself; ``key``: the
    key a user writes, when not the field's name."""
    metadata = {"doc": doc, "choices": choices, "extra_choices": extra_choices, "kinds": kinds, "shown": shown,
                "key": key}
    if default is MISSING:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


def allowed_values(metadata: dict[str, Any]) -> tuple[str, ...]:
    """The values a setting allows (empty: any value of its type)."""
    choices = metadata.get("choices", ())
    if isinstance(choices, str):
        module_name, attribute = choices.split(":")
        choices = tuple(getattr(importlib.import_module(module_name), attribute))
    return (*metadata.get("extra_choices", ()), *choices)


@dataclass(frozen=True)
class ZoneConfig:
    """A polygon of one source's picture (streamd.analytics): which detections are in it, tracked objects
    entering, leaving and staying, and how many are in it."""

    name: str = setting(doc="letters, digits, `_ . -`; unique among the source's zones and lines; the `zone` "
                            "metric label and the name in messages and events")
    polygon: tuple[tuple[float, float], ...] = setting(doc="`[[x, y], ...]`: at least 3 corners in order, edges that "
                                                           "do not cross each other; closed from the last corner "
                                                           "back to the first")
    units: str = setting("pixels", "`pixels` of the source's frames (x right, y down from the top-left corner), "
                                   "or `fractions` of its width and height (0 to 1)", choices=UNITS)
    classes: tuple[str, ...] = setting((), "only detections of these classes (names from `model.classes`) are in "
                                           "the zone; empty: every class", shown="`[]` (every class)")
    anchor: str = setting("bottom_centre", "the point of a box that must be inside the polygon", choices=ANCHORS)
    min_frames: int = setting(3, "a tracked object enters (or leaves) once its anchor has been inside (or outside) "
                                 "this many of its frames in a row: a box flickering over the edge neither enters "
                                 "nor leaves")
    dwell_seconds: float = setting(0.0, "a `zone_dwell` event once a tracked object has been in the zone this long "
                                        "(source time); 0: none")
    max_objects: int = setting(0, "occupancy alarm: `occupancy_start` once more than this many detections are in "
                                  "the zone for `hold_seconds`, `occupancy_end` once at most this many are for "
                                  "`hold_seconds`; 0: no alarm")
    hold_seconds: float = setting(0.0, "how long the occupancy must stay over (or back at or under) `max_objects` "
                                       "before the alarm starts (or ends), in source time")


@dataclass(frozen=True)
class LineConfig:
    """A directed line of one source's picture (streamd.analytics): tracked objects crossing it, each
    way counted."""

    name: str = setting(doc="letters, digits, `_ . -`; unique among the source's zones and lines; the `line` "
                            "metric label and the name in events")
    points: tuple[tuple[float, float], ...] = setting(doc="`[[x1, y1], [x2, y2]]`: the two end points; only a "
                                                          "crossing between them counts")
    units: str = setting("pixels", "`pixels` or `fractions` of the frame, as for zones", choices=UNITS)
    in_side: str = setting("left", "which side is inside, as seen on the picture from the first point looking "
                                   "towards the second: a crossing into it counts `in`, out of it `out`",
                           choices=LINE_SIDES)
    classes: tuple[str, ...] = setting((), "only objects of these classes are counted; empty: every class",
                                       shown="`[]` (every class)")
    anchor: str = setting("bottom_centre", "the point of a box that crosses the line", choices=ANCHORS)
    margin_px: float = setting(5.0, "hysteresis: an object changes side only once its anchor is more than this many "
                                    "pixels past the line, so a box jittering on the line counts once")


@dataclass(frozen=True)
class SourceConfig:
    id: str = setting(doc="letters, digits, `_ . -`; the ZeroMQ topic and the `source` metric label")
    kind: str = setting(doc="what the source is", choices=SOURCE_KINDS)
    url: str = setting("", "`rtsp://...` or a file path (required for rtsp, file, image). A file that is missing "
                           "or unreadable is retried like a dead camera, not a config error",
                       kinds=("file", "image", "rtsp"), shown="—")
    pace: str = setting("native", "`native`: deliver at the source's fps, like a camera (an image repeats at `fps`); "
                                  "`fast`: read flat out and never drop (benchmarks)", choices=PACES, kinds=_READ)
    loop: bool = setting(False, "start over at the end", kinds=_READ)
    max_frames: int = setting(0, "end the source after this many frames (0: unbounded)", kinds=_READ)
    fps: float = setting(0.0, "override the rate (0: the file's own; images, synthetic scenes and files whose "
                              "container gives no rate default to 10)", kinds=_READ)
    # The capture thread already runs beside inference, so one decoder thread is enough for camera
    # rates and spends the least CPU per frame (docs/benchmarks.md).
    decode_threads: int = setting(1, "FFmpeg decoder threads per file. One spends the least CPU per frame; more, or "
                                     "0 (FFmpeg chooses), decode a large file faster when it is read flat out, at "
                                     "more CPU per frame", kinds=("file",))
    decoder: str = setting("opencv", "`opencv` (FFmpeg on the CPU), `jetson` (GStreamer: `nvv4l2decoder` on a Jetson, "
                                     "`avdec_h264` elsewhere; `pip install 'streamd[gstreamer]'`; see "
                                     "[Jetson](deploy/jetson.md)), "
                                     "`auto` (`jetson` on a Jetson with `nvv4l2decoder`, else `opencv`), or `nvdec` "
                                     "(NVDEC through PyNvVideoCodec, `pip install 'streamd[nvdec]'`; frames stay in "
                                     "GPU memory on `model.device`, so it needs the GPU path: `model.backend = "
                                     "\"tensorrt\"` and `model.max_batch` ≥ 2, a config error otherwise). A missing "
                                     "PyNvVideoCodec or GPU stops the start with one error naming the source (exit "
                                     "1); a codec NVDEC cannot decode is that source's open error, retried like a "
                                     "dead camera", choices=SOURCE_DECODERS, kinds=("file", "rtsp"))
    max_pixels: int = setting(DEFAULT_MAX_PIXELS, "the largest picture (width × height) the source may deliver; "
                                                  "a bigger one is refused before decoding where the header says "
                                                  "its size (PNG, JPEG, BMP, GIF, WebP images; videos and cameras "
                                                  "once opened), counted and retried like a failed open. 0: no "
                                                  "limit", kinds=("file", "image", "rtsp"), shown="67108864 "
                                                  "(8192 × 8192)")
    transport: str = setting("tcp", "RTSP transport", choices=RTSP_TRANSPORTS, kinds=_LIVE)
    open_timeout_seconds: float = setting(5.0, "RTSP open timeout", kinds=_LIVE)
    read_timeout_seconds: float = setting(3.0, "RTSP read timeout", kinds=_LIVE)
    stall_timeout_seconds: float = setting(5.0, "no new frame for this long: the source is stalled and reopened",
                                           kinds=_LIVE)
    backoff_initial_seconds: float = setting(0.5, "first reconnect (or reopen) delay, doubled per failure; each "
                                                  "wait drawn from half to all of it (jitter)")
    backoff_max_seconds: float = setting(10.0, "the reconnect delay's cap")
    width: int = setting(640, "synthetic scene width", kinds=("synthetic",))
    height: int = setting(480, "synthetic scene height", kinds=("synthetic",))
    seed: int = setting(0, "synthetic scene seed", kinds=("synthetic",))
    # Analytics, written as [[sources.zones]] and [[sources.lines]] tables (their keys: ZoneConfig, LineConfig).
    zones: tuple[ZoneConfig, ...] = setting((), "`[[sources.zones]]` tables: polygons (see below and "
                                                "[Analytics](analytics.md))", shown="none")
    lines: tuple[LineConfig, ...] = setting((), "`[[sources.lines]]` tables: directed counting lines (see below and "
                                                "[Analytics](analytics.md)); they need `[tracking]`", shown="none")


@dataclass(frozen=True)
class ModelConfig:
    path: str = setting(doc="ONNX model (or TensorRT engine for `backend = \"tensorrt\"`), or "
                            "`builtin:synthetic-shapes`")
    classes: tuple[str, ...] = setting(doc="list of names, or a file with one name a line",
                                       shown="`NAME.names` or `classes.txt` beside the model; else, for a model "
                                             "with 80 classes, the COCO names (logged)")
    input_width: int = setting(0, "`[width, height]`; required when the model's input is dynamic",
                               key="input_size", shown="the model's")
    input_height: int = setting(0, key="input_size")  # written as input_size = [width, height]
    score_threshold: float = setting(0.3, "detection score (objectness × class), between 0 and 1")
    nms_threshold: float = setting(0.45, "class-aware NMS IoU, between 0 and 1")
    max_detections: int = setting(100, "per frame")
    preprocessing: str = setting("auto", "`yolox`: BGR 0-255, letterbox top-left, pad 114 (official YOLOX "
                                         "exports); `ultralytics`: RGB 0-1, letterbox centred, pad 114 (Ultralytics "
                                         "YOLO exports); `rtdetr`: RGB 0-1, the frame stretched over the whole input, "
                                         "no letterbox (RT-DETR exports); `legacy`: RGB /255, ImageNet mean/std, "
                                         "centred, pad 128; "
                                         "`auto`: the convention of the model's family, read from its output layout "
                                         "and the export's metadata",
                                 choices=CONVENTIONS, extra_choices=("auto",))
    layout: str = setting("auto", "`yolox` ([B, N, 5+C], raw boxes), `yolox-decoded` (boxes decoded in the graph), "
                                  "`heads` (three [B, 5+C, H, W] logit maps), `ultralytics` ([B, 4+C, N]: YOLOv5u, "
                                  "YOLOv8, YOLO11), `ultralytics-transposed` ([B, N, 4+C]), `end2end` ([B, K, 6]: "
                                  "NMS-free exports, boxes already selected; CPU path only for now), `rtdetr` "
                                  "([B, K, 6]: RT-DETR's own selection, normalised boxes), `rtdetr-queries` "
                                  "([B, K, 4+C]: earlier RT-DETR exports; both CPU path only for now); `auto`: "
                                  "detected from the outputs and the export's metadata, and a layout that fits "
                                  "none is an error at start-up",
                          choices=LAYOUTS, extra_choices=("auto",))
    backend: str = setting("onnxruntime", "`auto`: TensorRT when it imports and a GPU is present, else ONNX Runtime",
                           choices=BACKENDS, extra_choices=("auto",))
    # CPU backends: frames run side by side on `workers` threads with `threads` cores each.
    workers: int = setting(0, "CPU: frames run side by side on this many workers; 0 = auto (2, 1 on a single core). "
                              "More workers raise throughput and keep frame age steady when the machine is busy. "
                              "`workers = 1` with `threads = 0` runs one frame at a time over all cores with ONNX "
                              "Runtime's own threading: a slightly lower median frame age on a quiet machine, but "
                              "a long tail on a busy one and less than half the throughput")
    threads: int = setting(0, "CPU: cores per worker; 0 = auto (the cores shared among the workers; with one "
                              "worker, the backend's default)")
    fold_preprocessing: bool = setting(True, "ONNX Runtime: run cast, HWC→CHW, channel swap and normalisation inside "
                                             "the model graph (same outputs, less host time); only the letterbox "
                                             "stays on the host")
    max_batch: int = setting(1, "cross-stream batching: up to this many frames, the newest of different sources, per "
                                "detector call; 1 runs one frame at a time. At least the cameras a worker serves lets"
                                " a batch one frame period late lose nothing: the frames it left waiting go in too, "
                                "each just before its successor, as one more detector call (below that, only into "
                                "room left after every camera's newest frame). ONNX Runtime gives a model exported "
                                "with a fixed batch of 1 a dynamic batch (a graph edit, refused naming the node where"
                                " it cannot be proven safe) and checks at start-up that a batch gives the outputs of "
                                "single frames. Raise it on the GPU, where a call for several frames costs little "
                                "more than one; on the CPU a batch is no faster than its frames one by one, so keep 1"
                                " there (see [Benchmarks](benchmarks.md))")
    # 20 ms: one 50 fps period; at 30 fps cameras the derived window is usually the shorter.
    batch_window_seconds: float = setting(DEFAULT_BATCH_WINDOW_SECONDS,
                                          "the longest a batch waits for more frames after its first one. The "
                                          "window is the fastest streaming source's frame period minus the measured "
                                          "batch time, capped by this; a source that is not streaming (connecting, "
                                          "stalled, backing off, finished, or silent for 3 of its periods) is never "
                                          "waited for")
    precision: str = setting("fp32", "TensorRT engine precision", choices=PRECISIONS)
    model_id: str = setting("", "the `model` field of messages", shown="file stem")
    # One daemon per GPU (systemd: streamd@gpu0, streamd@gpu1).
    device: int = setting(0, "the GPU (CUDA device number) of the GPU path: engine, kernels, buffers and the "
                             "`nvdec` sources' decoders. A device that is not visible stops the start with an error "
                             "(exit 1). A list (`[0, 1]`) or `\"all\"` spreads the [worker processes]"
                             "(running.md#worker-processes) over those GPUs, at least one worker each: one service "
                             "for the whole box ([Several GPUs](deploy/systemd.md#several-gpus))")
    # Written as `device = [0, 1]` or "all"; () means just `device`. Workers each get one of them.
    devices: tuple[int, ...] = setting((), key="device")
    # streamd.gpu.zero_copy, zero_copy_batch.
    zero_copy: str = setting("auto", "GPU path: `auto` reads host frames in place from mapped host memory (and, at "
                                     "`max_batch` 1, writes candidates there) on an integrated GPU (Jetson), copies "
                                     "elsewhere; `on` forces zero-copy (a discrete GPU too: slower there, for "
                                     "testing), `off` never. See [Jetson](deploy/jetson.md)", choices=ZERO_COPY_MODES)


@dataclass(frozen=True)
class PublishConfig:
    endpoint: str = setting(DEFAULT_PUBLISH_ENDPOINT, "ZeroMQ XPUB endpoint; `tcp://0.0.0.0:5555` serves other hosts")
    send_hwm: int = setting(DEFAULT_SEND_HWM, "messages queued per subscriber before drops (counted)")
    wait_for_subscriber_seconds: float = setting(0.0, "batch jobs over files: hold the sources until a subscriber has "
                                                      "subscribed, at most this long, so the first frames are not "
                                                      "published to nobody; 0: start at once (live cameras)")
    # CURVE (ZeroMQ's authentication and encryption), re-read on change. Empty: plaintext, for 127.0.0.1.
    curve_secret_key: str = setting("", "plaintext when empty; the daemon's `NAME.key_secret` from `streamd keys`: "
                                        "CURVE, see [Output](output.md#authenticated-subscribers-curve). A key "
                                        "file that is missing or holds no key pair is a config error (exit 2)")
    curve_authorized_keys: str = setting("", "with CURVE, required: a folder of the subscribers' `NAME.key` files, "
                                             "re-read when it changes; a folder that does not exist is a config "
                                             "error (exit 2)")


@dataclass(frozen=True)
class MetricsConfig:
    bind: str = setting(DEFAULT_METRICS_BIND, "`/metrics`, `/healthz`, `/readyz`; port 0 picks a free one (logged)")
    enabled: bool = setting(True, "serve them")


@dataclass(frozen=True)
class PreviewConfig:
    """Live annotated preview over HTTP (streamd.preview). Frames are copied and encoded only while
    someone watches a source."""

    enabled: bool = setting(False, "serve the preview (the built-in demo turns it on). Off by default: it shows "
                                   "camera pictures, without authentication")
    bind: str = setting(DEFAULT_PREVIEW_BIND, "its own address, apart from `metrics.bind`, so opening metrics to a "
                                              "remote Prometheus does not open the cameras; port 0 picks a free one "
                                              "(logged)")
    fps: float = setting(5.0, "the most preview frames per second per watched source (at most 60)")
    # JPEG encoding costs in proportion to the pixels: 640 wide keeps a watched source cheap beside
    # the pipeline (docs/operating.md).
    max_width: int = setting(640, "frames are downscaled to at most this wide before JPEG encoding (NVDEC frames "
                                  "are downloaded already thinned); wider is sharper and costs more CPU per frame")
    jpeg_quality: int = setting(70, "JPEG quality, 1-100: higher is sharper and larger")
    max_viewers: int = setting(4, "open streams over all sources; one more gets 503")
    client_timeout_seconds: float = setting(5.0, "a viewer whose connection takes no data for this long is dropped "
                                                 "(it never slows the pipeline)")


@dataclass(frozen=True)
class TrackingConfig:
    """Multi-object tracking per source (streamd.tracking): each published detection gets a track id."""

    enabled: bool = setting(True, "track objects per source. On by default: it costs little beside inference (see "
                                  "[Tracking](tracking.md)), only adds fields to messages, and ids are what "
                                  "counting, dwell time and line crossing need")
    high_score_threshold: float = setting(0.5, "detections at or above it start and continue tracks; those below it "
                                               "(down to `model.score_threshold`) only continue running tracks "
                                               "(ByteTrack's second association)")
    new_track_score_threshold: float = setting(0.6, "an unmatched detection at least this sure starts a track (at "
                                                    "least `high_score_threshold`)")
    match_iou_threshold: float = setting(0.2, "least IoU of a track's predicted box and a high-score detection")
    lost_track_buffer_frames: int = setting(30, "a track with no detection is kept this many source frames (dropped "
                                                "frames count) and comes back under the same id; 0: never")
    withhold_contested_ids: bool = setting(True, "a box that another track of its class also claims (where "
                                                 "objects overlap) is published without `track_id` until the claim "
                                                 "ends, rather than with an id that may be the other object's; a new "
                                                 "track's first id waits while a track of its class touches its box "
                                                 "(at most 5 frames). Objects of different classes never contest "
                                                 "each other")
    appearance: bool = setting(True, "a colour signature of each box (64 pixels sampled in it) helps a lost track's "
                                     "object come back under its id; needs the frame on the host (OpenCV, GStreamer "
                                     "and synthetic sources; NVDEC frames stay on the GPU and track by motion alone)")


@dataclass(frozen=True)
class DaemonConfig:
    log_level: str = setting("info", "log messages at this level and above", choices=LOG_LEVELS)
    max_frame_age_seconds: float = setting(0.0, "frames older than this when the pipeline takes them are dropped "
                                                "and counted as `too_old`; 0 = off")
    # A daemon under journald says it is alive without a metrics scrape.
    status_interval_seconds: float = setting(60.0, "one log line per source this often: fps, frame age p50 and drops "
                                                   "over the interval, state; 0 = off")
    workers: int | str = setting("auto", "processes that share the sources (one pipeline each) behind one endpoint, "
                                         "one metrics port and one preview: a number, or `auto` (one on the CPU "
                                         "path; on the GPU path enough for the sources' pixel rate, at least one per "
                                         "GPU of `model.device`); see [worker processes](running.md#worker-processes)")


SINK_KINDS = ("mqtt", "webhook", "nats")
# A JetStream stream a NATS sink creates: how long it keeps messages, and where.
NATS_RETENTIONS = ("limits", "interest", "workqueue")
NATS_STORAGES = ("file", "memory")
# What a sink may carry: analytics events, per-frame detections, retained zone and line counts.
SINK_CARRIES = ("events", "detections", "counts")


@dataclass(frozen=True)
class SinkConfig:
    """A bridge that sends messages to another system (streamd.sinks) from its own thread, through a
    bounded buffer: a broker that is slow or down costs counted drops, never pipeline time."""

    kind: str = setting(doc="what it sends to", choices=SINK_KINDS)
    name: str = setting("", "the `sink` metric label and the MQTT client id's suffix; letters, digits, `_ . -`; "
                            "empty: `KIND-N` (N: its place among the `[[sinks]]`)", shown="`KIND-N`")
    carries: tuple[str, ...] = setting(("events", "counts"), "what it sends: `events` (analytics events), "
                                                             "`detections` (every frame's message), `counts` "
                                                             "(zone occupancy and line counts, retained)")
    sources: tuple[str, ...] = setting((), "detections of these source ids only; empty: every source",
                                       shown="`[]` (every source)")
    classes: tuple[str, ...] = setting((), "detections messages keep only detections of these classes (a frame with "
                                           "none left is not sent); empty: every class", shown="`[]` (every class)")
    host: str = setting("127.0.0.1", "the broker's host name or address")
    port: int = setting(0, "the broker's port; 0: 1883, or 8883 with `tls`", shown="`0` (1883 / 8883)")
    username: str = setting("", "user name (a webhook: HTTP basic authentication); empty: none")
    password: str = setting("", "password (prefer `password_file`)")
    password_file: str = setting("", "a file whose first line is the password; a missing file is a config error")
    tls: bool = setting(False, "connect over TLS, verifying the broker's certificate")
    ca_file: str = setting("", "with `tls` (a webhook: an `https` url): the CA certificates to verify the server "
                               "against; empty: the system's")
    qos: int = setting(1, "MQTT quality of service of what it publishes: 0 (at most once) or 1 (at least once)",
                       kinds=("mqtt",))
    node: str = setting("", "the topic part naming this daemon: `streamd/<node>/<source>/...` (NATS: "
                            "`<subject_prefix>.<node>.<source>...`); empty: the host name", shown="the host name")
    home_assistant: bool = setting(False, "publish Home Assistant MQTT discovery for each zone's occupancy and "
                                          "each line's counts (retained, under `discovery_prefix`)", kinds=("mqtt",))
    discovery_prefix: str = setting("homeassistant", "Home Assistant's discovery topic prefix", kinds=("mqtt",))
    buffer_messages: int = setting(10000, "messages held while the broker is slow or away; when full the oldest "
                                          "is dropped (counted, reason `buffer_full`)")
    buffer_path: str = setting("", "a folder that keeps the buffered messages on disk, so a restart (or a crash) "
                                   "during an outage loses none (`<buffer_path>/<name>/`); empty: memory only",
                               kinds=("mqtt", "nats"))
    keepalive_seconds: int = setting(15, "MQTT keepalive: the broker declares the daemon offline (last will) "
                                         "after about 1.5 times this without a word; NATS: the ping interval (a "
                                         "server silent for two pings counts as lost)", kinds=("mqtt", "nats"))
    url: str = setting("", "the `http://` or `https://` URL each message is POSTed to (`https`: the server's "
                           "certificate is verified, against `ca_file` or the system's CA certificates)",
                       kinds=("webhook",))
    secret: str = setting("", "the HMAC-SHA256 key of the `X-Streamd-Signature` header (prefer `secret_file`); "
                              "one of the two is required", kinds=("webhook",))
    secret_file: str = setting("", "a file whose first line is the secret; a missing file is a config error",
                               kinds=("webhook",))
    timeout_seconds: float = setting(10.0, "how long a request may take to connect, and then to be answered, "
                                           "before it is tried again", kinds=("webhook",))
    servers: tuple[str, ...] = setting(("nats://127.0.0.1:4222",), "the NATS servers' URLs (`nats://HOST:PORT`, "
                                                                   "`tls://HOST:PORT`); the first that answers is "
                                                                   "used", kinds=("nats",))
    subject_prefix: str = setting("streamd", "the first token(s) of every subject: `<subject_prefix>.<node>.<source>"
                                             ".events` (`.detections`, `.counts`)", kinds=("nats",))
    stream: str = setting("STREAMD", "the JetStream stream that stores the messages: created if absent with the "
                                     "settings below; one that exists is used as it is, and must take the sink's "
                                     "subjects", kinds=("nats",))
    stream_subjects: tuple[str, ...] = setting((), "the subjects of a stream the sink creates; empty: every node's "
                                                   "(`<subject_prefix>.>`), so one stream collects a fleet",
                                               shown="`[\"<subject_prefix>.>\"]`", kinds=("nats",))
    retention: str = setting("limits", "a created stream keeps a message until its limits (`limits`: "
                                       "`max_age_seconds`, `max_bytes`), until every consumer acknowledged it "
                                       "(`interest`), or until one did (`workqueue`)", choices=NATS_RETENTIONS,
                             kinds=("nats",))
    storage: str = setting("file", "a created stream's storage: on the server's disk, or in its memory",
                           choices=NATS_STORAGES, kinds=("nats",))
    max_age_seconds: float = setting(0.0, "a created stream drops messages older than this; 0: no limit",
                                     kinds=("nats",))
    max_bytes: int = setting(0, "a created stream drops its oldest messages past this size; 0: no limit (the "
                                "server's own JetStream limits still apply)", kinds=("nats",))
    duplicate_window_seconds: float = setting(120.0, "a created stream stores a message id once within this window: "
                                                     "a message sent again after a lost acknowledgement is not stored "
                                                     "twice if the resend comes within it", kinds=("nats",))


@dataclass(frozen=True)
class Config:
    sources: tuple[SourceConfig, ...]
    model: ModelConfig
    publish: PublishConfig = field(default_factory=PublishConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    path: str = ""  # where it was loaded from, for messages
    preview: PreviewConfig = field(default_factory=PreviewConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    sinks: tuple[SinkConfig, ...] = ()


# [section] -> its dataclass, in the order of the reference; sources is an array of tables.
SECTIONS: dict[str, type] = {"sources": SourceConfig, "model": ModelConfig, "publish": PublishConfig,
                             "metrics": MetricsConfig, "daemon": DaemonConfig, "preview": PreviewConfig,
                             "tracking": TrackingConfig, "sinks": SinkConfig}
# Arrays of tables inside each [[sources]] table, in the order of the reference.
SOURCE_TABLES: dict[str, type] = {"zones": ZoneConfig, "lines": LineConfig}
