"""The hand-written end-to-end loop ``streamd bench`` holds the daemon to: OpenCV decodes the files,
a letterbox (the YOLOX convention: BGR, image at the top-left, pad 114), ONNX Runtime's
``session.run``, YOLOX decoding and class-aware NMS, boxes back in frame pixels. No tracking, no
publishing: a frame is done when its detections are. Only the decode/NMS maths comes from streamd
(``streamd.yolox.postprocess``): that is the work itself, not the pipeline.

Process layouts (``LAYOUTS``), each run by :func:`run_layout` in processes it spawns:

- ``one_process``: one loop over every file in turn, one session with intra-op threads = cores;
- ``process_per_file``: one process per file, cores / files threads each;
- ``thread_per_file``: one process, one thread per file (decode, resize and ``session.run`` release
  the GIL), sharing one session of cores / files threads;
- ``pipelined``: one process, a reader thread per file (decode + letterbox) feeding a short queue,
  the main thread running the session with intra-op threads = cores and the decoding.

Every finished frame is reported to the measuring process as a few bytes on a pipe, which stamps
its arrival, as the daemon's subscriber stamps a message.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np

LAYOUTS = ("one_process", "process_per_file", "thread_per_file", "pipelined")
PAD_VALUE = 114
# file index, frame index, detections: what the measuring process counts.
REPORT = struct.Struct("<HIH")
END = b""
QUEUED_FRAMES = 4


@dataclass(frozen=True)
class Work:
    """What every layout does, the same for all (picklable: it crosses to spawned processes)."""

    model_path: str
    files: tuple[str, ...]
    max_frames: int
    layout: str  # the model's output layout (streamd.yolox.postprocess.LAYOUTS)
    num_classes: int
    score_threshold: float
    nms_threshold: float
    max_detections: int


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads_for(layout: str, files: int, cpus: int | None = None) -> int:
    """ONNX Runtime intra-op threads per session in ``layout``."""
    cpus = cpus or cores()
    return cpus if layout in ("one_process", "pipelined") else max(1, cpus // files)


def processes_for(layout: str, files: int) -> int:
    return files if layout == "process_per_file" else 1


def _session(model_path: str, threads: int):
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model_path, sess_options=options, providers=["CPUExecutionProvider"])


class _Model:
    """A session and what turns its outputs into frame-pixel detections."""

    def __init__(self, work: Work, threads: int) -> None:
        from streamd.yolox.decoders import make_decoder  # noqa: PLC0415

        self.session = _session(work.model_path, threads)
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.height, self.width = int(model_input.shape[2]), int(model_input.shape[3])
        # Any layout streamd decodes; the letterbox stays YOLOX's for every family (the detections are
        # counted, not compared: the cost of an RGB swap and a scale is not charged to this baseline).
        self.decoder = make_decoder(work.layout, self.width, self.height, work.num_classes, work.score_threshold,
                                    work.nms_threshold, work.max_detections)

    def detect(self, network_input: np.ndarray, ratio: float, frame_width: int, frame_height: int) -> int:
        outputs = self.session.run(None, {self.input_name: network_input})
        detections = self.decoder.decode(outputs)
        boxes = detections.boxes_xyxy / ratio  # top-left letterbox: no offset to take away
        np.clip(boxes, 0, [frame_width, frame_height, frame_width, frame_height], out=boxes)
        return int(boxes.shape[0])


class _Reader:
    """One file: decode (one FFmpeg thread, into the previous frame's buffer) and letterbox."""

    def __init__(self, path: str, max_frames: int, width: int, height: int) -> None:
        import cv2  # noqa: PLC0415

        self._cv2 = cv2
        self.capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
        if not self.capture.isOpened():
            raise RuntimeError(f"cannot open {path}")
        self.max_frames = max_frames
        self.index = 0
        self.width, self.height = width, height
        self.canvas = np.full((height, width, 3), PAD_VALUE, np.uint8)
        self.image: np.ndarray | None = None
        self.geometry: tuple[float, int, int] | None = None

    def next(self) -> tuple[int, np.ndarray, float, int, int] | None:
        """(frame index, 1x3xHxW float32 input, ratio, frame width, frame height), or None at the end."""
        if self.index >= self.max_frames:
            return None
        ok, image = self.capture.read(self.image)
        if not ok:
            return None
        self.image = image
        frame_height, frame_width = image.shape[:2]
        if self.geometry is None:
            ratio = min(self.width / frame_width, self.height / frame_height)
            self.geometry = (ratio, int(frame_width * ratio), int(frame_height * ratio))
        ratio, resized_width, resized_height = self.geometry
        self._cv2.resize(image, (resized_width, resized_height), dst=self.canvas[:resized_height, :resized_width],
                         interpolation=self._cv2.INTER_LINEAR)
        network_input = self.canvas.transpose(2, 0, 1)[None].astype(np.float32)
        index = self.index
        self.index += 1
        return index, network_input, ratio, frame_width, frame_height

    def close(self) -> None:
        self.capture.release()


def _reporter(connection: Connection):
    lock = threading.Lock()

    def report(file_index: int, frame_index: int, detections: int) -> None:
        with lock:
            connection.send_bytes(REPORT.pack(file_index, frame_index, min(detections, 65535)))
    return report


def _loop_files(model: _Model, readers: Sequence[tuple[int, _Reader]], report) -> None:
    """Every file in turn, one frame each, until all have ended."""
    active = list(readers)
    while active:
        for entry in list(active):
            file_index, reader = entry
            item = reader.next()
            if item is None:
                active.remove(entry)
                continue
            frame_index, network_input, ratio, frame_width, frame_height = item
            report(file_index, frame_index, model.detect(network_input, ratio, frame_width, frame_height))


def _pipelined(model: _Model, readers: Sequence[tuple[int, _Reader]], report) -> None:
    frames: queue.Queue = queue.Queue(QUEUED_FRAMES)

    def read(file_index: int, reader: _Reader) -> None:
        while (item := reader.next()) is not None:
            frames.put((file_index, *item))
        frames.put(None)

    threads = [threading.Thread(target=read, args=entry, daemon=True) for entry in readers]
    for thread in threads:
        thread.start()
    ended = 0
    while ended < len(threads):
        item = frames.get()
        if item is None:
            ended += 1
            continue
        file_index, frame_index, network_input, ratio, frame_width, frame_height = item
        report(file_index, frame_index, model.detect(network_input, ratio, frame_width, frame_height))


def process_main(work: Work, layout: str, file_indices: Sequence[int], threads: int, connection: Connection) -> None:
    """One process of ``layout``: the files ``file_indices`` of ``work``; reports every frame on
    ``connection``, then ``END``."""
    report = _reporter(connection)
    try:
        model = _Model(work, threads)
        readers = [(index, _Reader(work.files[index], work.max_frames, model.width, model.height))
                   for index in file_indices]
        if layout == "thread_per_file":
            workers = [threading.Thread(target=_loop_files, args=(model, [entry], report)) for entry in readers]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        elif layout == "pipelined":
            _pipelined(model, readers, report)
        else:
            _loop_files(model, readers, report)
        for _, reader in readers:
            reader.close()
    finally:
        connection.send_bytes(END)
        connection.close()


def start_layout(work: Work, layout: str) -> tuple[list[multiprocessing.Process], list[Connection]]:
    """Spawn the processes of ``layout``; returns them and the receiving ends of their pipes."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}, expected one of {LAYOUTS}")
    context = multiprocessing.get_context("spawn")
    count = processes_for(layout, len(work.files))
    threads = threads_for(layout, len(work.files))
    shares = [list(range(len(work.files)))] if count == 1 else [[index] for index in range(len(work.files))]
    processes, receivers = [], []
    for share in shares:
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=process_main, args=(work, layout, share, threads, sender),
                                  name=f"handwritten-{layout}", daemon=True)
        process.start()
        sender.close()
        processes.append(process)
        receivers.append(receiver)
    return processes, receivers
