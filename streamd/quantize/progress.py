"""A dependency-free progress bar on stderr (tqdm is not a streamd dependency)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")


# Off a terminal (journald, CI logs, `| tee`): one line this often, so a long phase (the
# sensitivity search: about a minute on a 2-core machine) is visibly alive.
LINE_INTERVAL_SECONDS = 10.0


def progress(items: Iterable[T], total: int, label: str, stream: TextIO | None = None,
             min_interval_seconds: float = 0.2, line_interval_seconds: float = LINE_INTERVAL_SECONDS) -> Iterator[T]:
    """Yield ``items`` while drawing ``label [#####.....] n/total`` on ``stream`` (stderr).

    On a terminal it redraws in place at most every ``min_interval_seconds``, so a fast loop is not
    slowed by terminal I/O. Elsewhere it writes ``label: n/total (p%) in s`` lines: the first
    item's, then one every ``line_interval_seconds``, and the last.
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
        elif not interactive and done < total and (done == 1 or now - last >= line_interval_seconds):
            last = now
            out.write(f"{label}: {done}/{total} ({100 * done // max(total, 1)}%) in {now - started:.1f}s\n")
            out.flush()
    if interactive:
        out.write("\n")
    else:
        out.write(f"{label}: {done}/{total} in {time.monotonic() - started:.1f}s\n")
    out.flush()


class LogWriter:
    """A file-like sink for a library's ``print``s (``contextlib.redirect_stdout``): each line goes
    to ``logger`` at DEBUG, so it neither mixes into stdout nor shows by default."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if line.strip():
                self._logger.debug("%s", line.strip())
        return len(text)

    def flush(self) -> None:
        if self._pending.strip():
            self._logger.debug("%s", self._pending.strip())
        self._pending = ""
