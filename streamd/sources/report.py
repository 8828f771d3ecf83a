"""What a capture thread reports about its source, as an interface: the daemon passes its
``StreamdMetrics`` (which has these methods), tests pass theirs or none. So capture does not import
the metrics package, and metrics does not import sources."""

from __future__ import annotations

from typing import Protocol


class CaptureReport(Protocol):
    def declare_source(self, source_id: str) -> None:
        """Before the first frame: the source exists (its series start at zero, state connecting)."""

    def set_source_state(self, source_id: str, state: str) -> None: ...

    def frame_captured(self, source_id: str) -> None: ...

    def frame_dropped(self, source_id: str, reason: str) -> None:
        """A frame never processed; ``reason`` one of the metrics' drop reasons (``superseded``...)."""

    def source_error(self, source_id: str, kind: str) -> None:
        """A failed ``open``/``read`` or a ``stall``."""

    def source_reconnected(self, source_id: str) -> None: ...

    def mark_last_frame(self, source_id: str, unix_time: float) -> None:
        """When the source's last frame came (wall clock)."""
