"""A sink's messages on disk (``buffer_path``), so a restart during an outage, or a crash, loses nothing that
had reached the disk: append-only segment files of numbered records, and a cursor naming the first
record not yet settled (sent, or dropped and counted).

Only the sink's thread reads and writes here; the pipeline thread never waits for the disk. On start the
records from the cursor on go back into the sink's buffer with their numbers, so a NATS sink sends them
again with the message ids they had (JetStream stores once what it already took).

The folder holds ``journal.id`` (made once: the message ids' prefix), ``cursor`` (the first unsettled
number, replaced by a rename) and ``<first number>.seg`` files of records: a header (CRC-32 of the rest,
number, kind, source and payload lengths), the source id and the payload. A record cut short by a power
loss fails its CRC and ends the segment's reading.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import struct
import time
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

# A record: (number, kind, source id, payload).
Record = tuple[int, int, str, bytes]
_HEADER = struct.Struct("<IQBHI")  # crc32, number, kind, len(source), len(payload)
# Records per segment: a settled segment is deleted whole, so the disk holds at most this many settled ones.
SEGMENT_RECORDS = 4096
# A folder another process holds (a worker that is still exiting) is waited for this long.
LOCK_WAIT_SECONDS = 5.0


class JournalError(OSError):
    """The folder cannot be made, read or written."""


class Journal:
    def __init__(self, folder: Path, lock_wait_seconds: float = LOCK_WAIT_SECONDS) -> None:
        self.folder = folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._lock = open(folder / "lock", "ab")  # noqa: SIM115 (held until close)
            deadline = time.monotonic() + lock_wait_seconds
            while True:
                try:
                    fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        self._lock.close()
                        raise JournalError(f"sink buffer folder {folder} is in use by another process (two "
                                           "daemons with one buffer_path and sink name?)") from None
                    time.sleep(0.1)
            id_path = folder / "journal.id"
            if not id_path.exists():
                _write_atomically(id_path, secrets.token_hex(6).encode())
            self.identity = id_path.read_text().strip()
        except OSError as error:
            raise JournalError(f"sink buffer folder {folder}: {error}") from error
        self._segments: list[int] = []  # first numbers, oldest first
        self._tail: BinaryIO | None = None
        self._tail_records = 0
        self._cursor = 0
        self._written_cursor = -1
        self.next_number = 0  # one past the highest number on disk

    def recover(self) -> list[Record]:
        """The records from the cursor on, oldest first; the disk's state read into this object."""
        try:
            cursor_path = self.folder / "cursor"
            self._cursor = int(cursor_path.read_text()) if cursor_path.exists() else 0
            self._segments = sorted(int(path.stem) for path in self.folder.glob("*.seg") if path.stem.isdigit())
            records: list[Record] = []
            for first in self._segments:
                for record in _read_segment(self._segment_path(first)):
                    self.next_number = max(self.next_number, record[0] + 1)
                    if record[0] >= self._cursor:
                        records.append(record)
        except (OSError, ValueError) as error:
            raise JournalError(f"sink buffer folder {self.folder}: {error}") from error
        self._written_cursor = self._cursor
        return records

    def append(self, records: Iterable[Record]) -> None:
        """Records numbered above every one before them, written through to the operating system."""
        for number, kind, source_id, payload in records:
            if self._tail is None or self._tail_records >= SEGMENT_RECORDS:
                self._open_segment(number)
            source = source_id.encode()
            body = _HEADER.pack(0, number, kind, len(source), len(payload))[4:] + source + payload
            assert self._tail is not None  # noqa: S101 (opened above)
            self._tail.write(struct.pack("<I", zlib.crc32(body)) + body)
            self._tail_records += 1
            self.next_number = number + 1
        if self._tail is not None:
            self._tail.flush()

    def settle(self, first_unsettled: int) -> None:
        """Every record numbered below ``first_unsettled`` is sent or dropped; written by the next ``flush``."""
        self._cursor = max(self._cursor, first_unsettled)

    def flush(self, sync: bool = False) -> None:
        """Write the cursor if it moved and delete segments it has passed; ``sync``: to the disk itself."""
        if self._tail is not None and sync:
            os.fsync(self._tail.fileno())
        if self._cursor != self._written_cursor:
            _write_atomically(self.folder / "cursor", str(self._cursor).encode(), sync)
            self._written_cursor = self._cursor
        while len(self._segments) > 1 and self._segments[1] <= self._cursor:
            self._segment_path(self._segments.pop(0)).unlink(missing_ok=True)

    def close(self) -> None:
        self.flush(sync=True)
        if self._tail is not None:
            self._tail.close()
            self._tail = None
        self._lock.close()  # and with it the lock

    def _open_segment(self, first: int) -> None:
        if self._tail is not None:
            os.fsync(self._tail.fileno())
            self._tail.close()
        self._tail = open(self._segment_path(first), "ab")  # noqa: SIM115 (kept open until the next segment)
        if first not in self._segments:  # an empty segment a crash left behind is written into
            self._segments.append(first)
        self._tail_records = 0

    def _segment_path(self, first: int) -> Path:
        return self.folder / f"{first:016d}.seg"


def _read_segment(path: Path) -> list[Record]:
    data = path.read_bytes()
    records: list[Record] = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        crc, number, kind, source_length, payload_length = _HEADER.unpack_from(data, offset)
        end = offset + _HEADER.size + source_length + payload_length
        if end > len(data) or zlib.crc32(data[offset + 4:end]) != crc:
            log.warning("%s: a record cut short at byte %d (a power loss while writing?); the rest is skipped",
                        path, offset)
            break
        source = data[offset + _HEADER.size:offset + _HEADER.size + source_length].decode()
        records.append((number, kind, source, data[end - payload_length:end]))
        offset = end
    return records


def _write_atomically(path: Path, data: bytes, sync: bool = True) -> None:
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        if sync:
            file.flush()
            os.fsync(file.fileno())
    os.replace(temporary, path)
