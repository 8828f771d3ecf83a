"""Between the pipeline and the preview's viewers.

``observe`` is called by the pipeline for every published result (its ``on_result`` hook). Without
a viewer of that source it stores a reference to the result's detections and returns: no copy, no
lock. With one, at most ``fps`` times a second it makes a small host copy of the picture
(streamd.preview.snapshot) and leaves it in the source's slot, replacing any not yet encoded; the
encoder thread draws and JPEG-encodes it, and viewers wait on the source's condition for the next
JPEG. The pipeline never waits for the encoder or for a viewer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np

from streamd.preview.draw import Box, annotate, boxes_of, draw_overlay
from streamd.preview.snapshot import host_copy, nv12_download, resized
from streamd.sources.device_image import DeviceNV12

log = logging.getLogger(__name__)

# Frames per second over the last this many published frames (index page).
FPS_WINDOW_FRAMES = 32
ENCODER_STOP_TIMEOUT_SECONDS = 2.0


class TooManyViewersError(Exception):
    """``max_viewers`` streams are open already."""


@dataclass(frozen=True)
class Latest:
    """What the index shows of a source's last published frame."""

    frame_index: int
    capture_time: float
    frame_age_seconds: float
    frame_width: int
    frame_height: int
    detections: object  # streamd Detections; turned into Box only when a page asks


@dataclass(frozen=True)
class _Pending:
    image: np.ndarray
    latest: Latest


class SourceView:
    """One source's preview state. Attributes written by the pipeline are plain references (atomic
    under the GIL); the JPEG and viewer count are guarded by ``condition``."""

    def __init__(self, source_id: str) -> None:
        self.source_id = source_id
        self.latest: Latest | None = None
        self.publish_times: deque[float] = deque(maxlen=FPS_WINDOW_FRAMES)
        self.viewers = 0
        self.next_due_monotonic = 0.0
        self.condition = threading.Condition()
        self.jpeg: bytes | None = None
        self.jpeg_sequence = 0
        self.frames_encoded = 0

    def fps(self, now_monotonic: float) -> float:
        times = list(self.publish_times)
        if len(times) < 2 or now_monotonic - times[-1] > 5.0:  # silent for 5 s: not streaming
            return 0.0
        return (len(times) - 1) / max(1e-9, times[-1] - times[0])

    def wait_newer(self, sequence: int, timeout_seconds: float) -> tuple[int, bytes] | None:
        """The JPEG after ``sequence`` (skipping any a slow viewer missed), or None on timeout."""
        with self.condition:
            if not self.condition.wait_for(lambda: self.jpeg_sequence > sequence, timeout_seconds):
                return None
            return self.jpeg_sequence, self.jpeg  # type: ignore[return-value]


class PreviewHub:
    """``sources`` gives the daemon's current sources and their states (a reload may change them),
    ``class_names`` the current model's class names; both are asked when a page is made."""

    def __init__(self, sources: Callable[[], Mapping[str, str]], class_names: Callable[[], Sequence[str]],
                 fps: float, max_width: int, jpeg_quality: int, max_viewers: int,
                 overlay: Callable[[str], object | None] | None = None) -> None:
        self._sources = sources
        self._class_names = class_names
        self._overlay = overlay  # a source's zones and lines with their live counts (streamd.analytics)
        self.views: dict[str, SourceView] = {source_id: SourceView(source_id) for source_id in sources()}
        self.period_seconds = 1.0 / fps
        self.max_width = max_width
        self.jpeg_quality = jpeg_quality
        self.max_viewers = max_viewers
        self._lock = threading.Lock()  # viewer counts, the pending slots, new views
        self._pending: dict[str, _Pending] = {}
        self._failed_sources: set[str] = set()
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._encode_loop, name="preview-encoder", daemon=True)

    def view(self, source_id: str) -> SourceView:
        """The source's view, made on first use (a source a reload added)."""
        view = self.views.get(source_id)
        if view is None:
            with self._lock:
                view = self.views.setdefault(source_id, SourceView(source_id))
        return view

    # -- the pipeline's side -----------------------------------------------------------------
    def observe(self, result: object, frame_age_seconds: float) -> None:
        """The pipeline's on_result hook: called for every published frame, before it is released."""
        frame = result.frame  # type: ignore[attr-defined]
        view = self.views.get(frame.source_id) or self.view(frame.source_id)
        now = time.monotonic()
        view.publish_times.append(now)
        latest = Latest(frame.index, frame.capture_time, frame_age_seconds, frame.width, frame.height,
                        result.detections)  # type: ignore[attr-defined]
        view.latest = latest
        if not view.viewers or now < view.next_due_monotonic:
            return
        # Keep the rate's phase while frames come often enough; restart it after a pause.
        behind = now - view.next_due_monotonic >= self.period_seconds
        view.next_due_monotonic = (now if behind else view.next_due_monotonic) + self.period_seconds
        try:
            image = self._grab(frame)
        except Exception:  # a preview must never take the pipeline down; said once per source
            if frame.source_id not in self._failed_sources:
                self._failed_sources.add(frame.source_id)
                log.exception("preview: cannot copy a frame of source %s (said once)", frame.source_id)
            return
        with self._lock:
            self._pending[frame.source_id] = _Pending(image, latest)
            self._wake.notify()

    def _grab(self, frame: object) -> np.ndarray:
        image = frame.image  # type: ignore[attr-defined]
        if isinstance(image, DeviceNV12):
            return nv12_download(image, self.max_width)
        if not isinstance(image, np.ndarray):
            raise TypeError(f"the preview reads host arrays and DeviceNV12 frames, not {type(image).__name__}")
        if getattr(frame, "release_image", None) is None:
            return image  # owned by the frame and never reused: resized on the encoder thread
        return host_copy(image, self.max_width)  # a pooled buffer goes back when the frame is released

    # -- the viewers' side -------------------------------------------------------------------
    @contextmanager
    def watch(self, source_id: str) -> Iterator[SourceView]:
        """Count a viewer of ``source_id`` while inside (KeyError: unknown source; TooManyViewersError)."""
        if source_id not in self.states():
            raise KeyError(source_id)
        view = self.view(source_id)
        with self._lock:
            if sum(v.viewers for v in self.views.values()) >= self.max_viewers:
                raise TooManyViewersError(f"{self.max_viewers} preview streams are open (preview.max_viewers)")
            view.viewers += 1
        try:
            yield view
        finally:
            with self._lock:
                view.viewers -= 1

    def viewer_count(self) -> int:
        with self._lock:
            return sum(v.viewers for v in list(self.views.values()))

    def states(self) -> dict[str, str]:
        """The current sources (in config order) and their states."""
        try:
            return dict(self._sources())
        except Exception:
            log.exception("preview: cannot read the sources")
            return {}

    def class_names(self) -> Sequence[str]:
        try:
            return self._class_names()
        except Exception:
            log.exception("preview: cannot read the class names")
            return ()

    def boxes(self, latest: Latest) -> list[Box]:
        return boxes_of(latest.detections, self.class_names())

    # -- the encoder thread ------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop the encoder; wake every viewer so its stream ends. Safe to call twice."""
        self._stop.set()
        with self._lock:
            self._wake.notify_all()
        if self._thread.is_alive():
            self._thread.join(ENCODER_STOP_TIMEOUT_SECONDS)
        for view in list(self.views.values()):
            with view.condition:
                view.condition.notify_all()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _encode_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._wake.wait_for(lambda: self._pending or self._stop.is_set(), timeout=1.0)
                pending, self._pending = self._pending, {}
            for source_id, item in pending.items():
                try:
                    jpeg = self.encode(item, source_id)
                except Exception:
                    log.exception("preview: cannot encode a frame of source %s", source_id)
                    continue
                view = self.views[source_id]
                with view.condition:
                    view.jpeg = jpeg
                    view.jpeg_sequence += 1
                    view.frames_encoded += 1
                    view.condition.notify_all()

    def overlay(self, source_id: str) -> object | None:
        if self._overlay is None:
            return None
        try:
            return self._overlay(source_id)
        except Exception:
            log.exception("preview: cannot read the zones and lines of source %s", source_id)
            return None

    def encode(self, item: _Pending, source_id: str = "") -> bytes:
        image = resized(item.image, self.max_width)
        if image is item.image:
            image = image.copy()  # never draw on the frame's own picture
        overlay = self.overlay(source_id) if source_id else None
        if overlay is not None:  # under the boxes
            draw_overlay(image, overlay, item.latest.frame_width, item.latest.frame_height)
        annotate(image, self.boxes(item.latest), item.latest.frame_width, item.latest.frame_height)
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise RuntimeError(f"JPEG encoding of a {image.shape} picture failed")
        return encoded.tobytes()
