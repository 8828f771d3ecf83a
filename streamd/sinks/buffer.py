"""A bounded first-in first-out buffer between the pipeline thread and a sink's thread.

``put`` never waits: when the buffer is full the oldest message is dropped (and counted), so what a sink
sends after an outage is the most recent ``capacity`` messages, in order. Newest-first would keep stale
messages and lose the present; for events and counts the present matters more.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any


class DropOldestBuffer:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.dropped = 0  # messages pushed out by newer ones, ever

    def put(self, item: Any) -> bool:
        """Append ``item``; False when the oldest message was dropped to make room."""
        with self._lock:
            room = len(self._items) < self.capacity
            if not room:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
        self._ready.set()
        return room

    def put_front(self, items: list[Any]) -> int:
        """Put ``items`` (oldest first) back at the head, ahead of what came since; those past the capacity
        at the tail of the buffer (the newest) stay, the oldest go. The number dropped."""
        with self._lock:
            self._items.extendleft(reversed(items))
            dropped = max(0, len(self._items) - self.capacity)
            for _ in range(dropped):
                self._items.popleft()
            self.dropped += dropped
        if items:
            self._ready.set()
        return dropped

    def take(self, limit: int) -> list[Any]:
        """Up to ``limit`` messages from the head, oldest first."""
        with self._lock:
            count = min(limit, len(self._items))
            taken = [self._items.popleft() for _ in range(count)]
            if not self._items:
                self._ready.clear()
        return taken

    def first(self) -> Any:
        """The message at the head (the oldest), without taking it; None when empty."""
        with self._lock:
            return self._items[0] if self._items else None

    def wait(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def __len__(self) -> int:
        return len(self._items)
