"""GPU tests: skipped unless cuda-python imports and a CUDA device is visible.

Run on a GPU machine with:  python3 -m pytest tests/gpu -q
"""

from __future__ import annotations

import pytest


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.gpu)
            if _REASON is not None:
                item.add_marker(pytest.mark.skip(reason=_REASON))
