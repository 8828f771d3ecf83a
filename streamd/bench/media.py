"""``streamd bench --make-test-video PATH``: a 1080p30 H.264 MP4 of a camera-like scene, from vtest.avi
(768x576, 10 fps) with ffmpeg, else GStreamer's gst-launch-1.0 (both outside Python; neither is a
streamd dependency). Media is made where it is needed, never committed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

WIDTH, HEIGHT, FPS = 1920, 1080, 30
# About what a 1080p camera streams at this scene's detail; key frame every second, like cameras.
BITRATE_KBPS = 1200


def commands(source: Path, output: Path) -> list[list[str]]:
    """The command lines that make ``output`` from ``source``, in order of preference."""
    ffmpeg = ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-an",
              "-vf", f"scale={WIDTH}:{HEIGHT},fps={FPS}", "-pix_fmt", "yuv420p", "-c:v", "libx264",
              "-preset", "veryfast", "-g", str(FPS), "-b:v", f"{BITRATE_KBPS}k", "-movflags", "+faststart", str(output)]
    gstreamer = ["gst-launch-1.0", "-q", "filesrc", f"location={source}", "!", "decodebin", "!", "videoconvert",
                 "!", "videoscale", "!", f"video/x-raw,width={WIDTH},height={HEIGHT},format=I420", "!", "videorate",
                 "!", f"video/x-raw,framerate={FPS}/1", "!", "x264enc", "speed-preset=veryfast",
                 f"key-int-max={FPS}", f"bitrate={BITRATE_KBPS}", "!", "h264parse", "!", "mp4mux", "faststart=true",
                 "!", "filesink", f"location={output}"]
    return [ffmpeg, gstreamer]


def make_test_video(source: Path, output: Path) -> str:
    """Write ``output``; returns the tool used. RuntimeError naming what to install when none worked."""
    if not source.is_file():
        raise RuntimeError(f"source video {source} does not exist (--source)")
    output.parent.mkdir(parents=True, exist_ok=True)
    tried = []
    for command in commands(source, output):
        if shutil.which(command[0]) is None:
            tried.append(f"{command[0]}: not installed")
            continue
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode == 0 and output.is_file() and output.stat().st_size > 0:
            return command[0]
        tried.append(f"{command[0]}: exit {result.returncode} {result.stderr.strip()[-300:]}")
    raise RuntimeError("cannot encode H.264 (" + "; ".join(tried) + "); install ffmpeg (with libx264) or "
                       "GStreamer with x264enc (Debian: gstreamer1.0-plugins-ugly)")


def read_frames(path: str | Path, count: int | None = None) -> list[np.ndarray]:
    """The first ``count`` frames (None: every frame) of a video file as OpenCV's FFmpeg decodes them
    (BGR): the bench's inputs and the reference other decoders are held to. Fewer if the file is shorter,
    none if it cannot be read."""
    import cv2  # noqa: PLC0415 (making test media needs no OpenCV)

    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = []
    while count is None or len(frames) < count:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames
