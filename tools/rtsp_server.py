#!/usr/bin/python3
"""A real RTSP server for tests and demos: serves a video file as H.264 on 127.0.0.1.

Run it with the *system* Python (`/usr/bin/python3`), which has GStreamer's introspection bindings
from Debian (`python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,ugly,bad}
gstreamer1.0-libav`, listed in .ci/apt-packages.txt); streamd's own environment does not need them.

    /usr/bin/python3 tools/rtsp_server.py --video ../shared/media/vtest.avi --port 8554 \\
        --mount cam0 --mount cam1 --fps 30 --repeat 3

Every client gets its own pipeline from the start of the file (like a camera that was just
switched on). Once listening it prints one line, ``READY <port> <url> [<url> ...]``, and flushes
stdout, so a test can wait for it. It runs until SIGTERM/SIGINT; tests also SIGKILL and SIGSTOP it.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def _launch_line(video: Path, fps: int, width: int, height: int, repeat: int) -> str:
    # `concat` plays the file `repeat` times back to back with continuous timestamps, which a
    # client sees as one unbroken stream (a seek-to-start loop would restart the RTP clock).
    sources = " ".join(f'filesrc location="{video}" ! decodebin ! queue ! c.' for _ in range(repeat))
    raw = "videoconvert"
    if width and height:
        raw += f" ! videoscale ! video/x-raw,width={width},height={height}"
    if fps:
        # Duplicates (or drops) frames to reach the requested rate; the duration stays the file's.
        raw += f" ! videorate ! video/x-raw,framerate={fps}/1"
    # zerolatency + frequent keyframes + SPS/PPS in band: a client that (re)connects decodes
    # within a fraction of a second, as with a real camera's short GOP.
    return (f"( concat name=c ! {raw} ! x264enc tune=zerolatency speed-preset=ultrafast "
            f"key-int-max={max(fps, 10)} ! rtph264pay name=pay0 pt=96 config-interval=1 {sources} )")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", required=True, type=Path, help="video file to serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8554, help="TCP port; 0 picks a free one")
    parser.add_argument("--mount", action="append", default=[], help="mount path, repeatable (default: stream)")
    parser.add_argument("--fps", type=int, default=0, help="output frame rate; 0 keeps the file's")
    parser.add_argument("--width", type=int, default=0, help="scale to this width (with --height)")
    parser.add_argument("--height", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="play the file this many times, then end")
    args = parser.parse_args(argv)
    if not args.video.is_file():
        parser.error(f"video file {args.video} does not exist")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    launch = _launch_line(args.video.resolve(), args.fps, args.width, args.height, args.repeat)
    paths = [m if m.startswith("/") else f"/{m}" for m in (args.mount or ["stream"])]
    for path in paths:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(False)
        mounts.add_factory(path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 1
    port = server.get_bound_port()
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    urls = " ".join(f"rtsp://{args.host}:{port}{path}" for path in paths)
    print(f"READY {port} {urls}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
