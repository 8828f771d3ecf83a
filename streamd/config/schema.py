"""The configuration's shape: dataclasses with named defaults. Validation lives in load.py."""

from __future__ import annotations

from dataclasses import dataclass, field

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
# The longest a detector batch waits for more frames after its first one (see ModelConfig.max_batch).
DEFAULT_BATCH_WINDOW_SECONDS = 0.020


@dataclass(frozen=True)
class SourceConfig:
    id: str
    kind: str
    url: str = ""
    # file: "native" paces at the file's fps (a live-camera stand-in), "fast" reads flat out and
    # never drops a frame (benchmarks); image: repeats at `fps`.
    pace: str = "native"
    loop: bool = False
    max_frames: int = 0  # end the source after this many frames; 0: unbounded
    fps: float = 0.0  # 0: the source's own rate (file) or 10 (image, synthetic)
    # file: FFmpeg decoder threads. The capture thread already runs beside inference, and one
    # decoder thread costs about half the CPU of FFmpeg's default per frame (vtest.avi: 0.39 vs
    # 0.72 ms); 0 lets FFmpeg choose (large files at high rates).
    decode_threads: int = 1
    # file, rtsp: "opencv" (CPU) or "nvdec" (GPU; needs the `nvdec` extra and the GPU detector).
    decoder: str = "opencv"
    # rtsp
    transport: str = "tcp"
    open_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 3.0
    stall_timeout_seconds: float = 5.0
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 10.0
    # synthetic
    width: int = 640
    height: int = 480
    seed: int = 0


@dataclass(frozen=True)
class ModelConfig:
    path: str
    classes: tuple[str, ...]
    input_width: int = 0  # 0: taken from the model
    input_height: int = 0
    score_threshold: float = 0.3
    nms_threshold: float = 0.45
    max_detections: int = 100
    preprocessing: str = "yolox"
    layout: str = "auto"
    backend: str = "onnxruntime"
    # CPU backends: frames run side by side on `workers` threads with `threads` cores each.
    # 0 = auto: 2 workers (1 on a single core) sharing the cores; workers = 1 and threads = 0
    # gives the lowest latency per frame instead of the highest throughput.
    workers: int = 0
    threads: int = 0
    # ONNX Runtime: run the cast/transpose/normalise of preprocessing inside the model graph (same
    # numbers, less host time per frame); only the letterbox stays on the host.
    fold_preprocessing: bool = True
    # Cross-stream batching: up to `max_batch` frames (the newest of several sources) per detector
    # call; 1 runs one frame at a time. A batch waits for more frames at most the fastest source's
    # frame period minus the batch's own time, and never more than `batch_window_seconds` (20 ms:
    # one 50 fps period; at 30 fps cameras the derived window is usually the shorter).
    max_batch: int = 1
    batch_window_seconds: float = DEFAULT_BATCH_WINDOW_SECONDS
    precision: str = "fp32"
    model_id: str = ""  # published in messages; default: the model file's stem
    # The GPU (CUDA device ordinal) the GPU path runs on: engine, kernels, buffers and the NVDEC
    # decoders of this daemon's sources. One daemon per GPU (systemd: streamd@gpu0, streamd@gpu1).
    device: int = 0
    # GPU path: read host frames (and, at max_batch 1, write candidates) in mapped page-locked host
    # memory instead of copying them (streamd.gpu.zero_copy, zero_copy_batch); one of ZERO_COPY_MODES.
    zero_copy: str = "auto"


@dataclass(frozen=True)
class PublishConfig:
    endpoint: str = DEFAULT_PUBLISH_ENDPOINT
    send_hwm: int = DEFAULT_SEND_HWM
    # Batch jobs over files: hold the sources until a subscriber is there (at most this long), so
    # the first frames are not published to nobody. 0: start at once (live cameras).
    wait_for_subscriber_seconds: float = 0.0
    # CURVE (ZeroMQ's authentication and encryption): this daemon's secret key file (`streamd keys`
    # writes NAME.key_secret) and a folder of the authorised subscribers' NAME.key files, re-read on
    # change. Empty: plaintext, for 127.0.0.1.
    curve_secret_key: str = ""
    curve_authorized_keys: str = ""


@dataclass(frozen=True)
class MetricsConfig:
    bind: str = DEFAULT_METRICS_BIND
    enabled: bool = True


@dataclass(frozen=True)
class PreviewConfig:
    """Live annotated preview over HTTP (streamd.preview). Off unless asked for: it serves camera
    pictures. Frames are copied and encoded only while someone watches a source."""

    enabled: bool = False
    bind: str = DEFAULT_PREVIEW_BIND
    fps: float = 5.0  # the most preview frames per second per watched source
    # Downscaled to at most this wide before encoding: JPEG costs 1.0 ms at 640x360 and 7.5 ms at
    # 1920x1080 on one core of the 2-core dev VM (quality 70, 2026-11-26).
    max_width: int = 640
    jpeg_quality: int = 70
    max_viewers: int = 4  # open streams over all sources; one more gets 503
    # A viewer whose socket takes no data for this long is dropped (it never slows the pipeline).
    client_timeout_seconds: float = 5.0


@dataclass(frozen=True)
class TrackingConfig:
    """Multi-object tracking per source (streamd.tracking): each published detection gets a track id.
    On by default: it costs well under 0.3 ms a frame and only adds message fields."""

    enabled: bool = True
    # ByteTrack's split: detections at or above this start and continue tracks; those below it
    # (down to model.score_threshold) only continue tracks that are already running.
    high_score_threshold: float = 0.5
    new_track_score_threshold: float = 0.6  # an unmatched detection at least this sure starts a track
    match_iou_threshold: float = 0.2  # least IoU of a track's predicted box and a high-score detection
    # A track with no detection is kept (lost) this many source frames, dropped frames included,
    # for the object to come back from an occlusion or a missed detection under the same id.
    lost_track_buffer_frames: int = 30


@dataclass(frozen=True)
class DaemonConfig:
    log_level: str = "info"
    # A frame older than this when the pipeline takes it is dropped (counted), never processed.
    max_frame_age_seconds: float = 0.0  # 0: no limit
    # One INFO line per source this often (fps, frame age p50, drops, state): a daemon under
    # journald says it is alive without a metrics scrape. 0: off.
    status_interval_seconds: float = 60.0


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
