"""A dependency-free progress bar on stderr (tqdm is not a streamd dependency)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], total: int, label: str, stream: TextIO | None = None,
             min_interval_seconds: float = 0.2) -> Iterator[T]:
    """Yield ``items`` while drawing ``label [#####.....] n/total`` on ``stream`` (stderr).

    Redraws at most every ``min_interval_seconds`` so a fast loop is not slowed by terminal I/O;
    on a non-TTY (CI logs) it writes one line at the end instead of carriage-return redraws.
    """
    out = stream if stream is not None else sys.stderr
    interactive = hasattr(out, "isatty") and out.isatty()
    started = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if interactive and (now - last >= min_interval_seconds or done == total):
            last = now
            filled = int(30 * done / max(total, 1))
            out.write(f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} {now - started:5.1f}s")
            out.flush()
    if interactive:
        out.write("\n")
    else:
        out.write(f"{label}: {done}/{total} in {time.monotonic() - started:.1f}s\n")
    out.flush()
