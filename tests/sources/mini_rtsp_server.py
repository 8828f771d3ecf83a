#!/usr/bin/env python3
"""A small RTSP server in the standard library only, for tests where GStreamer's is absent.

Why it exists: the GPU machine has no GStreamer, no ffmpeg and no package manager, so the RTSP tests'
server (tools/rtsp_server.py, GStreamer) cannot run there, and the NVDEC RTSP path (PyNvVideoCodec's
bundled FFmpeg demuxer) had never met a server. This one needs nothing but Python.

What it does: serves one H.264 Annex-B elementary stream file (``.h264``, no B-frames: RTP
timestamps follow the file's order), looped and paced in real time at ``--fps``, to any path, over
RTP/AVP/TCP interleaved in the RTSP connection (RFC 2326 10.12). OPTIONS, DESCRIBE (SDP with
packetization-mode=1 and sprop-parameter-sets from the file's SPS/PPS), SETUP, PLAY, GET_PARAMETER,
SET_PARAMETER (keep-alives), TEARDOWN. A SETUP for UDP is answered ``461 Unsupported Transport``, on
which FFmpeg's client (rtsp_transport unset: UDP first) retries over TCP. RTP per RFC 6184: single NAL
unit packets, FU-A fragments above MAX_PAYLOAD, 90 kHz timestamps, the marker bit on the last packet of
each access unit; the SPS and PPS are sent again before every IDR picture (a client that joins or
reconnects, or a decoder fed only in-band, gets them). Every client plays the file from its first
picture; several clients at once, each on its own threads.

    python tests/sources/mini_rtsp_server.py --video X.h264 --port 8554 --fps 30

prints ``READY <port>`` once listening (``--port 0``: any free port) and serves until killed.
In-process: ``server = MiniRtspServer(path, port=0, fps=30); server.start(); ...; server.stop()``.
"""

from __future__ import annotations

import argparse
import base64
import random
import socket
import socketserver
import struct
import sys
import threading
import time
from pathlib import Path

MAX_PAYLOAD = 1400  # RTP payload bytes per packet; larger NAL units are split into FU-A fragments
PAYLOAD_TYPE = 96
CLOCK_RATE = 90_000
NAL_SLICE, NAL_IDR, NAL_SEI, NAL_SPS, NAL_PPS, NAL_AUD = 1, 5, 6, 7, 8, 9
NAL_FU_A = 28


def split_nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B stream, start codes removed."""
    starts = []
    index = data.find(b"\x00\x00\x01")
    while index >= 0:
        starts.append(index + 3)
        index = data.find(b"\x00\x00\x01", index + 3)
    units = []
    for number, start in enumerate(starts):
        end = starts[number + 1] - 3 if number + 1 < len(starts) else len(data)
        unit = data[start:end].rstrip(b"\x00")  # a 4-byte start code's leading zero, trailing zero bytes
        if unit:
            units.append(unit)
    return units


def access_units(nal_units: list[bytes]) -> list[list[bytes]]:
    """NAL units grouped into pictures: a new one starts at a non-VCL unit (SPS, PPS, SEI, AUD) after
    a slice, or at a slice whose first_mb_in_slice is 0 (its first header bit is 1: ue(v) of 0)."""
    pictures: list[list[bytes]] = []
    current: list[bytes] = []
    has_slice = False
    for unit in nal_units:
        kind = unit[0] & 0x1F
        vcl = kind in (NAL_SLICE, NAL_IDR)
        first_slice = vcl and len(unit) > 1 and unit[1] & 0x80
        if has_slice and (not vcl or first_slice):
            pictures.append(current)
            current, has_slice = [], False
        current.append(unit)
        has_slice = has_slice or vcl
    if has_slice:
        pictures.append(current)
    return pictures


class H264Stream:
    """A .h264 file as pictures, each with the SPS and PPS in front of every IDR picture."""

    def __init__(self, path: Path) -> None:
        units = split_nal_units(Path(path).read_bytes())
        self.sps = next((u for u in units if u[0] & 0x1F == NAL_SPS), None)
        self.pps = next((u for u in units if u[0] & 0x1F == NAL_PPS), None)
        if self.sps is None or self.pps is None:
            raise ValueError(f"{path}: no SPS/PPS; not an H.264 Annex-B elementary stream?")
        self.pictures = []
        for units_of_picture in access_units(units):
            kinds = {u[0] & 0x1F for u in units_of_picture}
            header = [self.sps, self.pps] if NAL_IDR in kinds and NAL_SPS not in kinds else []
            self.pictures.append([u for u in header + units_of_picture if u[0] & 0x1F != NAL_AUD])
        if not self.pictures:
            raise ValueError(f"{path}: no pictures")

    def sdp(self, address: str) -> str:
        sprop = ",".join(base64.b64encode(u).decode() for u in (self.sps, self.pps))
        return ("v=0\r\n"
                f"o=- 0 0 IN IP4 {address}\r\n"
                "s=streamd mini RTSP server\r\n"
                "c=IN IP4 0.0.0.0\r\n"
                "t=0 0\r\n"
                "a=control:*\r\n"
                f"m=video 0 RTP/AVP {PAYLOAD_TYPE}\r\n"
                f"a=rtpmap:{PAYLOAD_TYPE} H264/{CLOCK_RATE}\r\n"
                f"a=fmtp:{PAYLOAD_TYPE} packetization-mode=1;profile-level-id={self.sps[1:4].hex()};"
                f"sprop-parameter-sets={sprop}\r\n"
                "a=control:track1\r\n")


def rtp_payloads(unit: bytes) -> list[bytes]:
    """One NAL unit as RTP payloads: itself, or FU-A fragments (RFC 6184 5.8)."""
    if len(unit) <= MAX_PAYLOAD:
        return [unit]
    indicator = (unit[0] & 0xE0) | NAL_FU_A
    kind = unit[0] & 0x1F
    body = unit[1:]
    chunk = MAX_PAYLOAD - 2
    payloads = []
    for offset in range(0, len(body), chunk):
        start = 0x80 if offset == 0 else 0
        end = 0x40 if offset + chunk >= len(body) else 0
        payloads.append(bytes((indicator, start | end | kind)) + body[offset:offset + chunk])
    return payloads


class Session(socketserver.BaseRequestHandler):
    """One RTSP connection: requests in, responses and interleaved RTP out."""

    server: _TcpServer

    def setup(self) -> None:
        self.lock = threading.Lock()  # responses and RTP packets share the socket
        self.playing = threading.Event()
        self.closed = threading.Event()
        self.channel = 0
        self.session_id = f"{random.getrandbits(32):08X}"
        self.sequence = random.getrandbits(16)
        self.timestamp_base = random.getrandbits(32)
        self.ssrc = random.getrandbits(32)
        self.streamer: threading.Thread | None = None

    def handle(self) -> None:
        stream = self.request.makefile("rb")
        try:
            while not self.closed.is_set():
                request = self._read_request(stream)
                if request is None:
                    return
                self._answer(*request)
        except OSError:
            pass
        finally:
            self.closed.set()

    def finish(self) -> None:
        self.closed.set()
        if self.streamer is not None:
            self.streamer.join(2)

    def _read_request(self, stream) -> tuple[str, str, dict[str, str]] | None:
        """The next request (method, url, headers); interleaved packets from the client (RTCP) skipped."""
        while True:
            first = stream.read(1)
            if not first:
                return None
            if first == b"$":
                header = stream.read(3)
                if len(header) < 3:
                    return None
                stream.read(struct.unpack("!H", header[1:])[0])
                continue
            line = first + stream.readline()
            if line.strip():
                break
        method, url, _ = (line.decode("latin-1").split() + ["", ""])[:3]
        headers = {}
        while (line := stream.readline().decode("latin-1").strip()):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        stream.read(int(headers.get("content-length", "0")))
        return method, url, headers

    def _answer(self, method: str, url: str, headers: dict[str, str]) -> None:
        cseq = headers.get("cseq", "0")
        if self.server.verbose:
            print(f"{self.client_address[1]}: {method} {url} {headers.get('transport', '')}", file=sys.stderr,
                  flush=True)
        if method == "OPTIONS":
            self._reply(cseq, "200 OK", {"Public": "OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, SET_PARAMETER, "
                                                   "TEARDOWN"})
        elif method == "DESCRIBE":
            address = self.request.getsockname()[0]
            base = url if url.endswith("/") else url + "/"
            self._reply(cseq, "200 OK", {"Content-Base": base, "Content-Type": "application/sdp"},
                        self.server.stream.sdp(address).encode())
        elif method == "SETUP":
            transport = headers.get("transport", "")
            if "RTP/AVP/TCP" not in transport.upper():
                self.server.udp_refusals += 1
                self._reply(cseq, "461 Unsupported Transport", {})
                return
            for part in transport.split(";"):
                if part.strip().startswith("interleaved="):
                    self.channel = int(part.split("=")[1].split("-")[0])
            self._reply(cseq, "200 OK", {"Transport": f"RTP/AVP/TCP;unicast;interleaved={self.channel}-"
                                                      f"{self.channel + 1};ssrc={self.ssrc:08X}",
                                         "Session": f"{self.session_id};timeout=60"})
        elif method == "PLAY":
            self._reply(cseq, "200 OK", {"Session": self.session_id, "Range": "npt=0.000-",
                                         "RTP-Info": f"url={url};seq={self.sequence};rtptime={self.timestamp_base}"})
            if not self.playing.is_set():
                self.playing.set()
                self.streamer = threading.Thread(target=self._stream, name="rtp", daemon=True)
                self.streamer.start()
        elif method in ("GET_PARAMETER", "SET_PARAMETER"):
            self._reply(cseq, "200 OK", {"Session": self.session_id})
        elif method == "TEARDOWN":
            self._reply(cseq, "200 OK", {"Session": self.session_id})
            self.closed.set()
        else:
            self._reply(cseq, "405 Method Not Allowed", {})

    def _reply(self, cseq: str, status: str, headers: dict[str, str], body: bytes = b"") -> None:
        lines = [f"RTSP/1.0 {status}", f"CSeq: {cseq}", "Server: streamd-mini-rtsp",
                 *(f"{name}: {value}" for name, value in headers.items())]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        with self.lock:
            self.request.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def _stream(self) -> None:
        """Send the pictures, looped, one every 1/fps seconds, until the connection ends."""
        pictures = self.server.stream.pictures
        interval = 1.0 / self.server.fps
        due = time.monotonic()
        number = 0
        try:
            while not self.closed.is_set():
                timestamp = (self.timestamp_base + round(number * CLOCK_RATE * interval)) & 0xFFFFFFFF
                payloads = [p for unit in pictures[number % len(pictures)] for p in rtp_payloads(unit)]
                packets = bytearray()
                for index, payload in enumerate(payloads):
                    marker = 0x80 if index == len(payloads) - 1 else 0
                    rtp = struct.pack("!BBHII", 0x80, marker | PAYLOAD_TYPE, self.sequence, timestamp,
                                      self.ssrc) + payload
                    packets += struct.pack("!cBH", b"$", self.channel, len(rtp)) + rtp
                    self.sequence = (self.sequence + 1) & 0xFFFF
                with self.lock:
                    self.request.sendall(packets)
                number += 1
                due += interval
                delay = due - time.monotonic()
                if delay < -1.0:
                    due = time.monotonic()  # a stalled client or machine: no burst to catch up
                elif delay > 0 and self.closed.wait(delay):
                    break
        except OSError:
            pass
        finally:
            self.closed.set()
            try:
                self.request.shutdown(socket.SHUT_RDWR)  # unblocks handle()'s read
            except OSError:
                pass


class _TcpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True  # restart on the same port right after a kill
    daemon_threads = True

    def __init__(self, address: tuple[str, int], stream: H264Stream, fps: float) -> None:
        self.stream = stream
        self.fps = fps
        self.udp_refusals = 0  # SETUPs answered 461 (a client asking for UDP first)
        self.verbose = False  # every request on stderr
        super().__init__(address, Session)


class MiniRtspServer:
    """The server in this process: ``start()`` listens and serves on a thread; ``stop()`` closes it."""

    def __init__(self, video: Path, port: int = 0, fps: float = 30.0, host: str = "127.0.0.1") -> None:
        self._server = _TcpServer((host, port), H264Stream(Path(video)), fps)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="mini-rtsp", daemon=True)

    @property
    def udp_refusals(self) -> int:
        return self._server.udp_refusals

    def url(self, path: str = "stream") -> str:
        return f"rtsp://127.0.0.1:{self.port}/{path}"

    def start(self) -> MiniRtspServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MiniRtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", required=True, type=Path, help="H.264 Annex-B elementary stream (.h264)")
    parser.add_argument("--port", type=int, default=8554, help="TCP port (0: any free one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--verbose", action="store_true", help="print every request on stderr")
    args = parser.parse_args()
    server = MiniRtspServer(args.video, args.port, args.fps, args.host)
    server._server.verbose = args.verbose
    print("READY", server.port, flush=True)
    print(f"mini RTSP server: {len(server._server.stream.pictures)} pictures of {args.video} at {args.fps:g} fps "
          f"on rtsp://{args.host}:{server.port}/", file=sys.stderr, flush=True)
    server._server.serve_forever()


if __name__ == "__main__":
    main()
