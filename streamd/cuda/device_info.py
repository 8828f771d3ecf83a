"""What kind of GPU this is, read once at start-up: integrated (Jetson) or discrete, and what it can map.

On an integrated GPU (``cudaDevAttrIntegrated``: Jetson Orin, Xavier) the CPU and GPU share one DRAM,
so copying a frame from pinned host memory to device memory costs memory bandwidth for nothing: the
GPU can read page-locked host memory mapped into its address space (``cudaDevAttrCanMapHostMemory``)
in place. ``concurrent_managed_access`` says whether managed (unified) memory may be touched by the
CPU while a kernel runs (0 on Jetson: managed memory there needs stream attachment, which is why
streamd's zero-copy path uses mapped page-locked memory, not managed memory).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from streamd.cuda.runtime import bindings, check, compute_capability, device_name


@dataclass(frozen=True)
class DeviceInfo:
    ordinal: int
    name: str
    compute_capability: tuple[int, int]
    integrated: bool  # shares DRAM with the CPU (Jetson)
    can_map_host_memory: bool  # cudaHostAllocMapped + cudaHostGetDevicePointer work
    concurrent_managed_access: bool  # CPU may touch managed memory while kernels run
    unified_addressing: bool  # one virtual address space for host and device
    total_memory_bytes: int

    @property
    def kind(self) -> str:
        return "integrated" if self.integrated else "discrete"

    def as_dict(self) -> dict:
        values = asdict(self)
        values["compute_capability"] = f"{self.compute_capability[0]}.{self.compute_capability[1]}"
        values["kind"] = self.kind
        return values


def _attribute(device: int, name: str) -> int:
    cudart, _, _ = bindings()
    return int(check(cudart.cudaDeviceGetAttribute(getattr(cudart.cudaDeviceAttr, name), device),
                     f"cudaDeviceGetAttribute({name}, device {device})"))


def device_info(device: int = 0) -> DeviceInfo:
    """The attributes of CUDA device ``device`` (CudaError if cuda-python, the driver or the device is missing)."""
    cudart, _, _ = bindings()
    properties = check(cudart.cudaGetDeviceProperties(device), f"cudaGetDeviceProperties({device})")
    return DeviceInfo(
        ordinal=device,
        name=device_name(device),
        compute_capability=compute_capability(device),
        integrated=bool(_attribute(device, "cudaDevAttrIntegrated")),
        can_map_host_memory=bool(_attribute(device, "cudaDevAttrCanMapHostMemory")),
        concurrent_managed_access=bool(_attribute(device, "cudaDevAttrConcurrentManagedAccess")),
        unified_addressing=bool(_attribute(device, "cudaDevAttrUnifiedAddressing")),
        total_memory_bytes=int(properties.totalGlobalMem),
    )


def cuda_versions() -> dict[str, str]:
    """The CUDA runtime and the version the installed driver supports, as ``"12.6"``-style strings."""
    cudart, _, _ = bindings()

    def text(version: int) -> str:
        return f"{version // 1000}.{version % 1000 // 10}"

    return {"runtime": text(int(check(cudart.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion"))),
            "driver": text(int(check(cudart.cudaDriverGetVersion(), "cudaDriverGetVersion")))}
