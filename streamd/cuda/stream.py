"""CUDA streams and events. Handles are kept as plain ints (what cuda-python accepts everywhere).

Creation and destruction go through cuda.bindings; the per-frame calls (record, wait, query,
synchronize, elapsed time) through ``streamd.cuda.driver``, which costs a fraction of a microsecond.
"""

from __future__ import annotations

import ctypes

from streamd.cuda import driver
from streamd.cuda.runtime import CudaError, bindings, check


class Stream:
    """A non-blocking stream (never serialises with the legacy default stream)."""

    def __init__(self) -> None:
        cudart, _, _ = bindings()
        handle = check(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")
        self._handle = handle  # keep the cuda-python object alive; ptr is what calls take
        self.ptr: int = int(handle)
        self._closed = False
        self._wait_event = driver.function("cuStreamWaitEvent")

    def synchronize(self) -> None:
        cudart, _, _ = bindings()
        check(cudart.cudaStreamSynchronize(self.ptr), "cudaStreamSynchronize")

    def wait(self, event: Event) -> None:
        """Later work on this stream waits for ``event`` (device-side; the host does not block)."""
        code = self._wait_event(self.ptr, event.ptr, 0)
        if code:
            driver.fail(code, "cuStreamWaitEvent")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        cudart, _, _ = bindings()
        check(cudart.cudaStreamDestroy(self.ptr), "cudaStreamDestroy")


class Event:
    """A CUDA event; ``timing=False`` makes record/query cheaper where no time is read."""

    def __init__(self, timing: bool = True) -> None:
        cudart, _, _ = bindings()
        flags = cudart.cudaEventDefault if timing else cudart.cudaEventDisableTiming
        handle = check(cudart.cudaEventCreateWithFlags(flags), "cudaEventCreateWithFlags")
        self._handle = handle
        self.ptr: int = int(handle)
        self.timing = timing
        self._closed = False
        self._record, self._query, self._synchronize = (
            driver.function(name) for name in ("cuEventRecord", "cuEventQuery", "cuEventSynchronize"))

    def record(self, stream: Stream) -> None:
        code = self._record(self.ptr, stream.ptr)
        if code:
            driver.fail(code, "cuEventRecord")

    def query(self) -> bool:
        """True once the work before the recorded point has completed; never blocks."""
        code = self._query(self.ptr)
        if code == driver.CUDA_ERROR_NOT_READY:
            return False
        if code:
            driver.fail(code, "cuEventQuery")
        return True

    def synchronize(self) -> None:
        code = self._synchronize(self.ptr)
        if code:
            driver.fail(code, "cuEventSynchronize")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        cudart, _, _ = bindings()
        check(cudart.cudaEventDestroy(self.ptr), "cudaEventDestroy")


def elapsed_seconds(start: Event, end: Event) -> float:
    """Device time between two completed timing events."""
    if not (start.timing and end.timing):
        raise CudaError("cudaEventElapsedTime", "cudaErrorInvalidResourceHandle",
                        "both events must be created with timing=True")
    milliseconds = ctypes.c_float()
    code = driver.function("cuEventElapsedTime")(ctypes.byref(milliseconds), start.ptr, end.ptr)
    if code:
        driver.fail(code, "cuEventElapsedTime")
    return milliseconds.value / 1000.0
