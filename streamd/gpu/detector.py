"""GpuDetector: double-buffered asynchronous GPU detection (frames in flight) behind the Detector interface.

Per frame, on two streams and with no device-wide synchronisation:
  copy stream:    pinned uint8 frame -> device frame                      (event ``uploaded``)
  compute stream: wait(uploaded) -> letterbox kernel -> engine.enqueue -> decode kernel
                  -> copy header + first candidates to pinned host memory  (event ``done``)
While frame k runs on the device the host is already harvesting frame k-1 (NMS on a few candidates)
and uploading frame k+1 into the other slot. ``submit`` blocks only when every slot is in flight.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

from streamd.cuda import memory, runtime
from streamd.cuda.stream import Stream, elapsed_seconds
from streamd.errors import BackendError
from streamd.frame import Allocator, Frame
from streamd.gpu.engine import DeviceEngine
from streamd.gpu.in_flight import InFlightFrame
from streamd.gpu.postprocess import GpuYoloxDecoder
from streamd.gpu.preprocess import GpuLetterbox
from streamd.inference.base import TensorSpec
from streamd.inference.detector import DetectionResult, Detector, StageTimings
from streamd.yolox.detections import Detections
from streamd.yolox.preprocess import Convention

log = logging.getLogger(__name__)

DEFAULT_SLOTS = 2
DEFAULT_MAX_FRAME_BYTES = 1920 * 1080 * 3
# When frames arrive more than this many frame-latencies apart, the device is idle between them and
# pipelining only delays results: submit then waits for its own frame (live low-fps streams).
DEFAULT_IDLE_FACTOR = 4.0


def _batch_one(spec: TensorSpec) -> TensorSpec:
    """The spec with a dynamic batch dimension fixed to 1 (the pipeline runs one frame per slot)."""
    if spec.shape and spec.shape[0] is None:
        return TensorSpec(spec.name, (1, *spec.shape[1:]), spec.dtype)
    return spec


class GpuDetector(Detector):
    """Frames in, detections out, ``slots`` frames in flight. Drive it from one thread."""

    # The decoder of the candidate area (streamd.gpu.zero_copy swaps in one writing to mapped memory).
    decoder_class: type[GpuYoloxDecoder] = GpuYoloxDecoder

    def __init__(self, engine: DeviceEngine, convention: Convention, num_classes: int,
                 score_threshold: float, nms_threshold: float, *, layout: str = "yolox",
                 max_detections: int = 100, model_id: str = "model", class_names: Sequence[str] = (),
                 slots: int = DEFAULT_SLOTS, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 host_capacity: int = 256, device: int = 0, collect_timings: bool = True,
                 owns_engine: bool = True, on_close: Callable[[], None] | None = None,
                 idle_factor: float = DEFAULT_IDLE_FACTOR) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        if len(engine.inputs) != 1 or len(engine.outputs) != 1:
            raise BackendError(f"the GPU pipeline needs one input and one [1, N, 5+C] output, got inputs "
                               f"{[s.name for s in engine.inputs]} outputs {[s.name for s in engine.outputs]}")
        input_spec, output_spec = (_batch_one(s) for s in (engine.inputs[0], engine.outputs[0]))
        if len(input_spec.shape) != 4 or input_spec.shape[0] != 1 or input_spec.shape[1] != 3:
            raise BackendError(f"engine input {input_spec.name}{list(input_spec.shape)} is not 1x3xHxW")
        if np.dtype(output_spec.dtype) != np.float32:
            raise BackendError(f"engine output {output_spec.name} is {np.dtype(output_spec.dtype)}; the GPU "
                               "decoder reads float32")
        self.model_id = model_id
        self.class_names = tuple(class_names)
        self.engine = engine
        self.device = device
        self.collect_timings = collect_timings
        self._owns_engine = owns_engine
        self._on_close = on_close  # e.g. the TensorRT backend that owns the engine
        self._input_name, self._output_name = input_spec.name, output_spec.name
        input_height, input_width = int(input_spec.shape[2]), int(input_spec.shape[3])
        self.input_size = (input_width, input_height)
        runtime.use_device(device)
        self.letterbox = GpuLetterbox(convention, input_width, input_height, input_spec.dtype, device)
        self.decoder = self.decoder_class(layout, input_width, input_height, num_classes, score_threshold,
                                       nms_threshold, max_detections, host_capacity, device,
                                       selected_rows=int(output_spec.shape[1]))
        if tuple(output_spec.shape[1:]) != self.decoder.output_shape:
            raise BackendError(f"engine output {output_spec.name}{list(output_spec.shape)} does not match "
                               f"{[1, *self.decoder.output_shape]} of layout {layout} for a {input_width}x"
                               f"{input_height} input and {num_classes} classes")
        self._slots: list[InFlightFrame] = []
        self._copy_stream = Stream()
        self._compute_stream = Stream()
        try:
            for index in range(slots):
                self._slots.append(self._allocate_slot(index, max_frame_bytes, [input_spec, output_spec]))
        except Exception:
            # Out of (pinned) memory part-way: give back what was taken before re-raising.
            for slot in reversed(self._slots):
                slot.free()
            self._compute_stream.close()
            self._copy_stream.close()
            self.decoder.close()
            raise
        self._in_flight: deque[InFlightFrame] = deque()
        self._ready: list[DetectionResult] = []
        self._next = 0
        self._closed = False
        # Host time spent blocked on the device (harvest waits): benchmarks subtract it from submit time
        # to get the host's own cost per frame.
        self.wait_seconds = 0.0
        self.idle_factor = idle_factor
        self._latency_ema = 0.0  # seconds from enqueue to completion, smoothed
        self._last_submit = float("-inf")

    # -- public API -------------------------------------------------------------------------------

    def frame_allocator(self) -> Allocator:
        """Pinned buffers for the capture's frame pool: frames then upload with no host copy here."""
        device = self.device

        def allocate(shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, Callable[[], None]]:
            runtime.use_device(device)  # called from a capture thread
            buffer = memory.PinnedBuffer(shape, dtype)
            return buffer.array, buffer.free

        return allocate

    def host_frame_buffer(self, width: int, height: int) -> np.ndarray:
        """The pinned HxWx3 uint8 array the next ``submit`` uploads from: a capture that decodes straight
        into it (``cv2.VideoCapture.read(array)``) saves the host copy. Valid until that submit."""
        slot = self._slots[self._next]
        if slot.busy:
            self._in_flight.remove(slot)
            self._ready.append(self._harvest(slot))
        nbytes = width * height * 3
        if nbytes > slot.host_frame.nbytes:
            slot.grow_frame(nbytes)
        return slot.frame_view(width, height)

    def submit(self, frame: Frame) -> list[DetectionResult]:
        self._check_open()
        runtime.use_device(self.device)
        now = time.perf_counter()
        arrival_gap, self._last_submit = now - self._last_submit, now
        slot = self._slots[self._next]
        if slot.busy:  # only with slots == 1, or after host_frame_buffer's wait
            self._in_flight.remove(slot)
            self._ready.append(self._harvest(slot))
        self._enqueue(slot, frame)
        self._next = (self._next + 1) % len(self._slots)
        self._in_flight.append(slot)
        results, self._ready = self._ready, []
        # Harvest finished frames in order; block on the oldest only when every slot is in flight. The
        # frame enqueued just now cannot have finished (it has a whole network to run): no query for it.
        in_flight = self._in_flight
        while in_flight and (len(in_flight) == len(self._slots)
                             or (in_flight[0] is not slot and in_flight[0].done.query())):
            results.append(self._harvest(in_flight.popleft()))
        if self.idle_factor > 0 and arrival_gap > self.idle_factor * self._latency_ema:
            # Frames come slower than the device finishes them: return this frame's result now.
            while self._in_flight:
                results.append(self._harvest(self._in_flight.popleft()))
        return results

    def warm_up(self) -> None:
        """Run a grey frame through every slot, so kernel loads and the engine's first-run set-up
        happen before the first real frame rather than in its latency (measured: a cold first frame
        took over 100 ms on an H200 with the stand-in engine)."""
        width, height = self.input_size
        grey = np.full((height, width, 3), 114, np.uint8)
        for index in range(len(self._slots) + 1):
            self.submit(Frame("warm-up", index, 0.0, 0.0, grey))
        self.drain()
        self._latency_ema = 0.0  # the cold runs above say nothing about steady-state latency

    def drain(self) -> list[DetectionResult]:
        self._check_open()
        results, self._ready = self._ready, []
        while self._in_flight:
            results.append(self._harvest(self._in_flight.popleft()))
        return results

    def close(self) -> None:
        """Wait for in-flight work, then release in reverse order of creation. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._compute_stream.synchronize()
            self._copy_stream.synchronize()
        finally:
            for slot in reversed(self._slots):
                slot.free()
            self._compute_stream.close()
            self._copy_stream.close()
            self.decoder.close()
            if self._owns_engine:
                self.engine.close()
            if self._on_close is not None:
                self._on_close()

    # -- internals --------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("GpuDetector is closed")

    def _enqueue(self, slot: InFlightFrame, frame: Frame) -> None:
        image = frame.image
        if not isinstance(image, np.ndarray):
            raise BackendError(f"GpuDetector takes host BGR frames, got {image!r:.80} from source {frame.source_id}; "
                               "NVDEC device frames go through the BatchGpuDetector (model.max_batch > 1)")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR image, got {image.shape} {image.dtype}")
        height, width = image.shape[:2]
        compute = self._compute_stream
        frame_ptr = self._stage_frame(slot, image, width, height)
        if self.collect_timings:
            slot.started.record(compute)
        slot.geometry = self.letterbox.launch(frame_ptr, width, height,
                                              slot.addresses[self._input_name], compute.ptr,
                                              counter_ptr=slot.device_area.ptr)
        if self.collect_timings:
            slot.preprocessed.record(compute)
        self.engine.enqueue(slot.addresses, compute.ptr)
        if self.collect_timings:
            slot.inferred.record(compute)
        self.decoder.launch(slot.addresses[self._output_name], slot.device_area.ptr, compute.ptr)
        self._fetch_results(slot, compute)
        slot.done.record(compute)
        slot.frame = frame
        slot.enqueued_at = time.perf_counter()

    def _allocate_slot(self, index: int, max_frame_bytes: int, tensors: list[TensorSpec]) -> InFlightFrame:
        """One slot's buffers (``streamd.gpu.zero_copy`` allocates mapped host memory instead)."""
        return InFlightFrame.allocate(index, max_frame_bytes, tensors, self.decoder.device_area_nbytes,
                             self.decoder.new_host_area())

    def _stage_frame(self, slot: InFlightFrame, image: np.ndarray, width: int, height: int) -> int:
        """Get the frame to the device: its device address, on the compute stream's order."""
        nbytes = image.nbytes
        if nbytes > slot.host_frame.nbytes:
            slot.grow_frame(nbytes)
        view = slot.frame_view(width, height)
        if image is view:  # decoded into host_frame_buffer(): nothing to copy or to check
            source_ptr = slot.host_frame.ptr
        elif image.flags.c_contiguous and (slot.host_frame.contains(image) or memory.is_pinned(image)):
            # Already page-locked (a capture that allocates pinned frames): DMA from it directly. The slot
            # keeps the Frame, so the memory outlives the copy.
            source_ptr = image.__array_interface__["data"][0]
        else:
            # One host memcpy into pinned memory; the DMA below then runs at full PCIe speed.
            np.copyto(view, image)
            source_ptr = slot.host_frame.ptr
        compute, copy = self._compute_stream, self._copy_stream
        memory.copy_htod_async(slot.device_frame.ptr, source_ptr, nbytes, copy.ptr)
        slot.uploaded.record(copy)
        compute.wait(slot.uploaded)
        return slot.device_frame.ptr

    def _fetch_results(self, slot: InFlightFrame, compute: Stream) -> None:
        """Bring the frame's candidates where the host reads them (after ``done``)."""
        self.decoder.copy_back(slot.device_area.ptr, slot.host_area, compute.ptr)

    def _harvest(self, slot: InFlightFrame) -> DetectionResult:
        waited = time.perf_counter()
        slot.done.synchronize()
        started = time.perf_counter()
        self.wait_seconds += started - waited
        latency = started - slot.enqueued_at
        self._latency_ema = latency if self._latency_ema == 0.0 else 0.9 * self._latency_ema + 0.1 * latency
        records = self.decoder.records(slot.host_area.array, slot.device_area.ptr)
        detections = self.decoder.finish(records)
        geometry, frame = slot.geometry, slot.frame
        slot.frame, slot.geometry = None, None
        if len(detections):
            detections = Detections(geometry.to_frame(detections.boxes_xyxy), detections.scores,
                                    detections.class_ids)
        host_seconds = time.perf_counter() - started
        if self.collect_timings:
            timings = StageTimings(elapsed_seconds(slot.started, slot.preprocessed),
                                   elapsed_seconds(slot.preprocessed, slot.inferred),
                                   elapsed_seconds(slot.inferred, slot.done) + host_seconds)
        else:
            timings = StageTimings(0.0, 0.0, host_seconds)
        return DetectionResult(frame, detections, timings)
