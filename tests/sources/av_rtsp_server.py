#!/usr/bin/python3
"""Test RTSP server for tests/sources/test_gstreamer_streams.py, run by the system /usr/bin/python3 (like
tools/rtsp_server.py): live test patterns as H.264 video with a G.711 audio stream (``/av``: video first,
``/audiofirst``: audio first), and H.265 video (``/h265``) when x265enc exists. Prints
``READY <port> <path> ...`` once listening and serves until killed."""

from __future__ import annotations

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

VIDEO = "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=10/1"
H264 = f"{VIDEO} ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 ! rtph264pay name=pay{{}} pt=96"
AUDIO = "audiotestsrc is-live=true ! audioconvert ! mulawenc ! rtppcmupay name=pay{} pt=0"
H265 = f"{VIDEO} ! x265enc tune=zerolatency speed-preset=ultrafast ! rtph265pay name=pay0 pt=96 config-interval=1"


def main() -> None:
    Gst.init(None)
    launches = {"/av": f"( {H264.format(0)} config-interval=1 {AUDIO.format(1)} )",
                "/audiofirst": f"( {AUDIO.format(0)} {H264.format(1)} config-interval=1 )"}
    if Gst.ElementFactory.find("x265enc"):
        launches["/h265"] = f"( {H265} )"
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service("0")
    mounts = server.get_mount_points()
    for path, launch in launches.items():
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(False)
        mounts.add_factory(path, factory)
    server.attach(None)
    print("READY", server.get_bound_port(), " ".join(launches), flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
