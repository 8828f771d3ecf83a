"""BatchGpuDetector: N frames of different sources and sizes through the GPU as one batch, two batches in flight.

Per ``submit_batch(frames)``, on one stream:
  host BGR frames only: upload each into its device frame buffer (NVDEC frames are already there)
  one batched letterbox launch (NV12 -> BGR inside the kernel)   -> [n, 3, H, W] float32
  engine at batch n (``set_input_shapes`` + ``enqueue``; TensorRT or the stand-in)
  one batched decode launch (score filter + compaction)          -> n candidate lists
  one copy back of every frame's header and first candidates     (the slot's event ``done``)
then, on the host, NMS per frame of the *previous* batch while the device runs this one.

Pipelining: a synchronous call leaves the device idle while the host harvests a batch and collects
the next, and the host idle while the device runs; at many cameras that fills the whole frame period
(docs/gpu.md). Now each call enqueues its
batch into one of two slots (candidate areas, pinned copy-back, staging, events) and harvests the
batch before it, so results come one call late and the last from ``drain()``, in submission order
(the pipeline publishes "results that arrive in a later call" in order). The device work stays on one
stream, so batch k+1's letterbox cannot overwrite the input batch k's engine still reads; what the two
slots separate is what the host touches (copy-back areas, staging) and what outlives the stream order
(each batch's overflow candidates). When calls come further apart than ``idle_factor`` batch latencies
(live, lightly loaded sources), a call waits for its own batch and returns its results at once:
pipelining would only add the gap between calls to every frame's age.

A frame's result equals the single-frame ``GpuDetector``'s for the same pixels (same kernels'
arithmetic, the same engine maths frame by frame), pipelined or not.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from streamd.cuda import memory, runtime
from streamd.cuda.stream import Event, Stream, elapsed_seconds
from streamd.errors import BackendError
from streamd.frame import Allocator, Frame
from streamd.gpu.batch_postprocess import GpuBatchYoloxDecoder
from streamd.gpu.batch_preprocess import FrameSurface, GpuBatchLetterbox
from streamd.gpu.engine import DeviceEngine
from streamd.inference.detector import DetectionResult, Detector, StageTimings
from streamd.sources.device_image import DeviceNV12
from streamd.yolox.detections import Detections
from streamd.yolox.preprocess import Convention

log = logging.getLogger(__name__)

DEFAULT_HOST_CAPACITY = 256
# Batches in flight: one on the device while the host harvests the one before it.
DEFAULT_IN_FLIGHT = 2
# Calls further apart than this many batch latencies get their own results at once (GpuDetector's rule).
DEFAULT_IDLE_FACTOR = 4.0


@dataclass
class _BatchSlot:
    """What one batch in flight owns until it is harvested."""

    area: memory.DeviceBuffer  # headers, first candidates, overflow (batch_area_nbytes)
    host_area: memory.PinnedBuffer  # the copy back of headers + first candidates
    events: list[Event]  # started, preprocessed, inferred, done
    staging: list[memory.PinnedBuffer | None]  # pinned copies of pageable host frames, per batch position
    frames: list[Frame] | None = None  # None: idle
    geometries: list = field(default_factory=list)
    enqueued_at: float = 0.0

    def free(self) -> None:
        for buffer in reversed(self.staging):
            if buffer is not None:
                buffer.free()
        for event in reversed(self.events):
            event.close()
        self.host_area.free()
        self.area.free()


class BatchGpuDetector(Detector):
    """Frames in (host BGR arrays or NVDEC ``DeviceNV12`` surfaces), detections out. One thread drives it."""

    def __init__(self, engine: DeviceEngine, convention: Convention, num_classes: int, score_threshold: float,
                 nms_threshold: float, *, max_batch: int, layout: str = "yolox", max_detections: int = 100,
                 model_id: str = "model", class_names: Sequence[str] = (),
                 host_capacity: int = DEFAULT_HOST_CAPACITY, device: int = 0, collect_timings: bool = True,
                 owns_engine: bool = True, on_close: Callable[[], None] | None = None,
                 in_flight: int = DEFAULT_IN_FLIGHT, idle_factor: float = DEFAULT_IDLE_FACTOR) -> None:
        if in_flight < 1:
            raise ValueError(f"in_flight must be >= 1, got {in_flight}")
        if len(engine.inputs) != 1 or len(engine.outputs) != 1:
            raise BackendError(f"the GPU pipeline needs one input and one [B, N, 5+C] output, got inputs "
                               f"{[s.name for s in engine.inputs]} outputs {[s.name for s in engine.outputs]}")
        input_spec, output_spec = engine.inputs[0], engine.outputs[0]
        if len(input_spec.shape) != 4 or input_spec.shape[1] != 3 or None in input_spec.shape[1:]:
            raise BackendError(f"engine input {input_spec.name}{list(input_spec.shape)} is not Bx3xHxW")
        self.dynamic_batch = input_spec.shape[0] is None
        if not self.dynamic_batch and max_batch != input_spec.shape[0]:
            raise BackendError(f"engine input {input_spec.name}{list(input_spec.shape)} has a fixed batch; "
                               f"max_batch {max_batch} needs a dynamic one (make_batch_dynamic, or a TensorRT "
                               "profile up to max_batch)")
        if np.dtype(input_spec.dtype) != np.float32 or np.dtype(output_spec.dtype) != np.float32:
            raise BackendError("the batched GPU pipeline exchanges float32 with the engine, got "
                               f"{np.dtype(input_spec.dtype)} in, {np.dtype(output_spec.dtype)} out")
        self.max_batch = max_batch
        self.model_id = model_id
        self.class_names = tuple(class_names)
        self.engine = engine
        self.device = device
        self.collect_timings = collect_timings
        self.idle_factor = idle_factor
        self._owns_engine = owns_engine
        self._on_close = on_close
        self._closed = False
        self._input_name, self._output_name = input_spec.name, output_spec.name
        input_height, input_width = int(input_spec.shape[2]), int(input_spec.shape[3])
        self.input_size = (input_width, input_height)
        runtime.use_device(device)
        self._stream = Stream()
        self.letterbox = GpuBatchLetterbox(convention, input_width, input_height, max_batch, device)
        self.decoder = GpuBatchYoloxDecoder(layout, input_width, input_height, num_classes, score_threshold,
                                            nms_threshold, max_batch, max_detections, host_capacity, device,
                                            selected_rows=int(output_spec.shape[1]))
        if tuple(output_spec.shape[1:]) != self.decoder.output_shape:
            self._free_parts()
            raise BackendError(f"engine output {output_spec.name}{list(output_spec.shape)} does not match "
                               f"{['B', *self.decoder.output_shape]} of layout {layout} for a {input_width}x"
                               f"{input_height} input and {num_classes} classes")
        # One input and output for every slot: the device work is ordered on one stream, and one address
        # set keeps one engine graph per batch size (the stand-in captures one per address set).
        self._input = memory.DeviceBuffer(max_batch * self.letterbox.output_nbytes_per_frame)
        self._output = memory.DeviceBuffer(max_batch * self.decoder.raw_output_nbytes)
        self._addresses = {self._input_name: self._input.ptr, self._output_name: self._output.ptr}
        self._slots: list[_BatchSlot] = []
        try:
            for _ in range(in_flight):
                self._slots.append(_BatchSlot(memory.DeviceBuffer(self.decoder.batch_area_nbytes),
                                              self.decoder.new_batch_host_area(), [Event() for _ in range(4)],
                                              [None] * max_batch))
        except Exception:
            for slot in reversed(self._slots):
                slot.free()
            self._output.free()
            self._input.free()
            self._free_parts()
            raise
        # Host BGR frames: one device frame buffer per batch position. Shared by the slots: an upload is
        # ordered on the stream after the previous batch's letterbox read the buffer.
        self._device_frames: list[memory.DeviceBuffer | None] = [None] * max_batch
        self._in_flight: deque[_BatchSlot] = deque()
        self._next = 0
        self._latency_ema = 0.0  # seconds from enqueue to the batch's completion seen by the host, smoothed
        self._last_submit = float("-inf")
        self.batches = 0
        self.frames = 0
        self.wait_seconds = 0.0  # host time blocked on the device (benchmarks subtract it)

    # -- public API -------------------------------------------------------------------------------

    def frame_allocator(self) -> Allocator:
        """Pinned buffers for the capture's frame pool (host frames then upload with no host copy)."""
        device = self.device

        def allocate(shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, Callable[[], None]]:
            runtime.use_device(device)
            buffer = memory.PinnedBuffer(shape, dtype)
            return buffer.array, buffer.free

        return allocate

    @property
    def reads_device_frames(self) -> bool:
        """NVDEC ``DeviceNV12`` frames are read in place (the daemon checks this for nvdec sources)."""
        return True

    @property
    def pending(self) -> int:
        """Batches enqueued whose results have not been returned yet."""
        return len(self._in_flight)

    def submit(self, frame: Frame) -> list[DetectionResult]:
        return self.submit_batch([frame])

    def submit_batch(self, frames: Sequence[Frame]) -> list[DetectionResult]:
        """Enqueue ``frames`` (1..max_batch, any mix of sizes and memory kinds) and return the results that
        completed, in submission order: normally the previous batch's; this batch's too when calls come
        slower than the device finishes batches. The rest come from later calls or ``drain()``."""
        if self._closed:
            raise BackendError("BatchGpuDetector is closed")
        count = len(frames)
        if count == 0:
            return []
        if count > self.max_batch:
            raise ValueError(f"submit_batch takes at most max_batch={self.max_batch} frames, got {count}")
        runtime.use_device(self.device)
        now = time.perf_counter()
        arrival_gap, self._last_submit = now - self._last_submit, now
        results: list[DetectionResult] = []
        slot = self._slots[self._next]
        if slot.frames is not None:  # only with in_flight == 1
            self._in_flight.remove(slot)
            results.extend(self._harvest(slot))
        self._enqueue(slot, frames)
        self._next = (self._next + 1) % len(self._slots)
        self._in_flight.append(slot)
        # Block on the oldest batch only when every slot is in flight; the batch just enqueued has a whole
        # network to run, so it is not queried.
        in_flight = self._in_flight
        while in_flight and (len(in_flight) == len(self._slots)
                             or (in_flight[0] is not slot and in_flight[0].events[3].query())):
            results.extend(self._harvest(in_flight.popleft()))
        if self.idle_factor > 0 and arrival_gap > self.idle_factor * self._latency_ema:
            while in_flight:  # batches come slower than the device finishes them: this one's results now
                results.extend(self._harvest(in_flight.popleft()))
        return results

    def warm_up(self, batch_sizes: Sequence[int] | None = None) -> None:
        """Run grey frames at every batch size (default 1..max_batch) before real frames: kernel loads,
        the engine's first runs and (stand-in) one graph capture per size stay out of frame latency."""
        width, height = self.input_size
        grey = np.full((height, width, 3), 114, np.uint8)
        for size in batch_sizes or range(1, self.max_batch + 1):
            self.submit_batch([Frame("warm-up", index, 0.0, 0.0, grey) for index in range(size)])
        self.drain()
        self._latency_ema = 0.0  # the cold runs say nothing about steady-state latency
        self._last_submit = float("-inf")

    def drain(self) -> list[DetectionResult]:
        """The results of every batch still in flight, in submission order."""
        if self._closed:
            raise BackendError("BatchGpuDetector is closed")
        results: list[DetectionResult] = []
        while self._in_flight:
            results.extend(self._harvest(self._in_flight.popleft()))
        return results

    def close(self) -> None:
        """Synchronise, then release in reverse order of creation. Idempotent. Frames of batches still in
        flight are not returned (``drain()`` first)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._stream.synchronize()
        finally:
            for buffer in reversed(self._device_frames):
                if buffer is not None:
                    buffer.free()
            for slot in reversed(self._slots):
                slot.free()
            self._output.free()
            self._input.free()
            self._free_parts()
            if self._owns_engine:
                self.engine.close()
            if self._on_close is not None:
                self._on_close()

    # -- internals --------------------------------------------------------------------------------

    def _enqueue(self, slot: _BatchSlot, frames: Sequence[Frame]) -> None:
        count = len(frames)
        compute = self._stream
        started, preprocessed, inferred, done = slot.events
        surfaces = [self._surface(slot, index, frame.image) for index, frame in enumerate(frames)]
        if self.collect_timings:
            started.record(compute)
        slot.geometries = self.letterbox.launch(surfaces, self._input.ptr, compute,
                                                self.decoder.counter_ptrs(slot.area.ptr, count))
        if self.collect_timings:
            preprocessed.record(compute)
        if self.dynamic_batch:
            self.engine.set_input_shapes(self.engine.static_shapes(count))
        self.engine.enqueue(self._addresses, compute.ptr)
        if self.collect_timings:
            inferred.record(compute)
        self.decoder.launch_batch(self._output.ptr, slot.area.ptr, count, compute.ptr)
        self.decoder.copy_back_batch(slot.area.ptr, slot.host_area, count, compute.ptr)
        done.record(compute)
        slot.frames = list(frames)
        slot.enqueued_at = time.perf_counter()

    def _harvest(self, slot: _BatchSlot) -> list[DetectionResult]:
        """Wait for the slot's batch, then NMS and box mapping per frame; the slot is idle after."""
        frames, geometries = slot.frames, slot.geometries
        count = len(frames)
        started, preprocessed, inferred, done = slot.events
        waited = time.perf_counter()
        done.synchronize()
        host_started = time.perf_counter()
        self.wait_seconds += host_started - waited
        latency = host_started - slot.enqueued_at
        self._latency_ema = latency if self._latency_ema == 0.0 else 0.9 * self._latency_ema + 0.1 * latency
        host_area = slot.host_area.array
        detections_list = []
        for index in range(count):
            records = self.decoder.batch_records(host_area, slot.area.ptr, count, index)
            detections = self.decoder.finish(records)
            if len(detections):
                detections = Detections(geometries[index].to_frame(detections.boxes_xyxy), detections.scores,
                                        detections.class_ids)
            detections_list.append(detections)
        host_seconds = (time.perf_counter() - host_started) / count
        if self.collect_timings:
            timings = StageTimings(elapsed_seconds(started, preprocessed) / count,
                                   elapsed_seconds(preprocessed, inferred) / count,
                                   elapsed_seconds(inferred, done) / count + host_seconds)
        else:
            timings = StageTimings(0.0, 0.0, host_seconds)
        slot.frames, slot.geometries = None, []
        self.batches += 1
        self.frames += count
        return [DetectionResult(frame, detections, timings) for frame, detections in zip(frames, detections_list)]

    def _free_parts(self) -> None:
        self.decoder.close()
        self.letterbox.close()
        self._stream.close()

    def _surface(self, slot: _BatchSlot, index: int, image: object) -> FrameSurface:
        if isinstance(image, DeviceNV12):
            if image.released:
                raise BackendError(f"NVDEC frame {image!r} was released before inference")
            return FrameSurface.nv12(image.luma_ptr, image.chroma_ptr, image.width, image.height, image.pitch,
                                     image.chroma_pitch)
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR image or a DeviceNV12 surface, got {image!r:.80}")
        height, width = image.shape[:2]
        nbytes = image.nbytes
        device_frame = self._device_frames[index]
        if device_frame is None or device_frame.nbytes < nbytes:
            if device_frame is not None:
                self._stream.synchronize()  # a batch in flight may still read it
                device_frame.free()
            device_frame = self._device_frames[index] = memory.DeviceBuffer(nbytes)
        if image.flags.c_contiguous and memory.is_pinned(image):
            source_ptr = image.__array_interface__["data"][0]
        else:
            staging = slot.staging[index]  # the slot's previous batch was harvested: its copy is done
            if staging is None or staging.nbytes < nbytes:
                if staging is not None:
                    staging.free()
                staging = slot.staging[index] = memory.PinnedBuffer((nbytes,), np.uint8)
            np.copyto(staging.view(image.shape, np.uint8), image)
            source_ptr = staging.ptr
        memory.copy_htod_async(device_frame.ptr, source_ptr, nbytes, self._stream.ptr)
        return FrameSurface.bgr(device_frame.ptr, width, height)
