"""CUDA streams and events. Handles are kept as plain ints (what cuda-python accepts everywhere)."""

from __future__ import annotations

from streamd.cuda.runtime import CudaError, bindings, check


class Stream:
    """A non-blocking stream (never serialises with the legacy default stream)."""

    def __init__(self) -> None:
        cudart, _, _ = bindings()
        handle = check(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")
        self._handle = handle  # keep the cuda-python object alive; ptr is what calls take
        self.ptr: int = int(handle)
        self._closed = False

    def synchronize(self) -> None:
        cudart, _, _ = bindings()
        check(cudart.cudaStreamSynchronize(self.ptr), "cudaStreamSynchronize")

    def wait(self, event: Event) -> None:
        """Later work on this stream waits for ``event`` (device-side; the host does not block)."""
        cudart, _, _ = bindings()
        check(cudart.cudaStreamWaitEvent(self.ptr, event.ptr, 0), "cudaStreamWaitEvent")

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

    def record(self, stream: Stream) -> None:
        cudart, _, _ = bindings()
        check(cudart.cudaEventRecord(self.ptr, stream.ptr), "cudaEventRecord")

    def query(self) -> bool:
        """True once the work before the recorded point has completed; never blocks."""
        cudart, _, _ = bindings()
        (error,) = cudart.cudaEventQuery(self.ptr)
        if error == cudart.cudaError_t.cudaErrorNotReady:
            return False
        check((error,), "cudaEventQuery")
        return True

    def synchronize(self) -> None:
        cudart, _, _ = bindings()
        check(cudart.cudaEventSynchronize(self.ptr), "cudaEventSynchronize")

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
    cudart, _, _ = bindings()
    milliseconds = check(cudart.cudaEventElapsedTime(start.ptr, end.ptr), "cudaEventElapsedTime")
    return float(milliseconds) / 1000.0
