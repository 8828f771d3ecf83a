"""GPU tests: skipped unless cuda-python imports and a CUDA device is visible.

Tests that take the ``kernel_backend`` fixture run twice: on the GPU ("cuda", skipped without one) and on the
host build of the same kernel sources ("host-build": ``tests/gpu/host_cuda.py``, g++, no GPU), which is not
skipped, so the kernels' logic is checked in every CPU test run too.

Run on a GPU machine with:  python3 -m pytest tests/gpu -q
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import skip_unless_required


def _gpu_unavailable_reason() -> str | None:
    try:
        import cuda.bindings  # noqa: F401, PLC0415
    except ImportError:
        return "cuda-python (cuda.bindings) is not installed"
    from streamd.cuda import runtime  # noqa: PLC0415

    if runtime.device_count() == 0:
        return "no CUDA device visible"
    return None


_REASON = _gpu_unavailable_reason()
HOST = "host"
# Allocations a host-build test never freed: kept alive, since a PinnedBuffer's numpy view may outlive the test.
_LEAKED: list = []


def _is_host_build(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return (callspec is not None and callspec.params.get("kernel_backend") == HOST) or \
        item.get_closest_marker("host_kernels") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace("\\", "/"):
            if _is_host_build(item):
                item.add_marker(pytest.mark.host_kernels)
                continue
            item.add_marker(pytest.mark.gpu)
            if _REASON is not None:
                item.add_marker(pytest.mark.skip(reason=_REASON))


@pytest.fixture(scope="session")
def host_kernel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """NVRTC's kernel cache for host builds: this test run's own, so no GPU CUBIN and no host build mix."""
    if shutil.which("g++") is None:
        skip_unless_required("gxx", "the host build of the kernels needs g++ (Debian package g++)")
    return tmp_path_factory.mktemp("host-kernel-cache")


@pytest.fixture(params=["cuda", HOST], ids=["cuda", "host-build"])
def kernel_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Where ``streamd.cuda`` runs the kernels: the GPU, or the host build (``tests/gpu/host_cuda.py``)."""
    if request.param == "cuda":
        if _REASON is not None:
            pytest.skip(_REASON)
        yield "cuda"
        return
    request.getfixturevalue("host_cuda")
    yield HOST


@pytest.fixture
def host_cuda(monkeypatch: pytest.MonkeyPatch, host_kernel_cache: Path) -> Iterator:
    """``streamd.cuda`` on the host build for this test; the ``HostCuda`` device (memory, launches)."""
    from tests.gpu.host_cuda import HostCuda  # noqa: PLC0415

    device = HostCuda()
    device.install(monkeypatch, host_kernel_cache)
    yield device
    _LEAKED.extend(device.release())
