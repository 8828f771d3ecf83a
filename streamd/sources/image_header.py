"""An image file's format and size from its header, read before anything decodes it.

A 20000 x 20000 PNG decodes to 1.2 GB; ``max_pixels`` (a source key) refuses such a file from these
few header bytes instead. PNG (IHDR), JPEG (the SOF segment, past any EXIF), BMP, GIF and WebP are
read here; for other formats the caller checks the decoded size.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic...): the ones that carry
# the frame's size. C4 (Huffman tables), C8 (reserved) and CC (arithmetic conditioning) are not SOFs.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0-7 (SOI and EOI end or start the walk).
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# The JPEG walk reads segment headers only; past this many bytes the file is not worth a guess.
_JPEG_MAX_HEADER_BYTES = 16 * 1024 * 1024


def image_size(path: str) -> tuple[str, int, int] | None:
    """``(format, width, height)`` of an image file, from its header; None when the file is no image
    this module reads (a video, TIFF, a truncated header)."""
    try:
        with open(path, "rb") as file:
            head = file.read(32)
            if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
                width, height = struct.unpack(">II", head[16:24])
                return "PNG", width, height
            if head.startswith(b"\xff\xd8"):
                size = _jpeg_size(file)
                return ("JPEG", *size) if size else None
            if head.startswith(b"BM") and len(head) >= 26:
                width, height = struct.unpack("<ii", head[18:26])
                return "BMP", abs(width), abs(height)  # a negative height: rows stored top-down
            if head[:6] in (b"GIF87a", b"GIF89a"):
                width, height = struct.unpack("<HH", head[6:10])
                return "GIF", width, height
            if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
                return _webp_size(head)
    except (OSError, struct.error):
        return None
    return None


def is_image(path: str) -> bool:
    """Whether the file starts like an image this module reads (whatever its name says)."""
    return image_size(path) is not None


def _jpeg_size(file: BinaryIO) -> tuple[int, int] | None:
    file.seek(2)
    while file.tell() < _JPEG_MAX_HEADER_BYTES:
        byte = file.read(1)
        if not byte:
            return None
        if byte != b"\xff":
            continue  # not at a marker: resynchronise on the next 0xFF
        marker = file.read(1)
        while marker == b"\xff":  # fill bytes
            marker = file.read(1)
        if not marker:
            return None
        code = marker[0]
        if code in _JPEG_STANDALONE or code == 0x00:
            continue
        if code in (0xD8, 0xD9):  # SOI again, or EOI before any frame
            return None
        length_bytes = file.read(2)
        if len(length_bytes) < 2:
            return None
        (length,) = struct.unpack(">H", length_bytes)
        if code in _JPEG_SOF:
            frame = file.read(5)
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return width, height
        if length < 2:
            return None
        file.seek(length - 2, 1)
    return None


def _webp_size(head: bytes) -> tuple[str, int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:
        width = 1 + int.from_bytes(head[24:27], "little")
        height = 1 + int.from_bytes(head[27:30], "little")
        return "WebP", width, height
    if chunk == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return "WebP", 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and len(head) >= 30:
        width, height = struct.unpack("<HH", head[26:30])
        return "WebP", width & 0x3FFF, height & 0x3FFF
    return None


def describe_pixels(width: int, height: int) -> str:
    """``20000x20000 (400 Mpx)``."""
    return f"{width}x{height} ({width * height / 1e6:.3g} Mpx)"
