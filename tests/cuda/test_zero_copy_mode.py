"""Which GPU path ``model.zero_copy`` picks for a device, from its attributes (no GPU needed)."""

from __future__ import annotations

import pytest

from streamd.config.schema import ZERO_COPY_MODES
from streamd.cuda.device_info import DeviceInfo
from streamd.errors import BackendError
from streamd.gpu.zero_copy import resolve_zero_copy

ORIN = DeviceInfo(0, "Orin", (8, 7), integrated=True, can_map_host_memory=True, concurrent_managed_access=False,
                  unified_addressing=True, total_memory_bytes=64 << 30)
H200 = DeviceInfo(0, "NVIDIA H200", (9, 0), integrated=False, can_map_host_memory=True,
                  concurrent_managed_access=True, unified_addressing=True, total_memory_bytes=141 << 30)
NO_MAPPING = DeviceInfo(0, "old", (5, 0), integrated=False, can_map_host_memory=False,
                        concurrent_managed_access=False, unified_addressing=True, total_memory_bytes=1 << 30)


@pytest.mark.parametrize(("mode", "info", "expected"), [
    ("auto", ORIN, True), ("auto", H200, False), ("auto", NO_MAPPING, False),
    ("on", ORIN, True), ("on", H200, True),
    ("off", ORIN, False), ("off", H200, False),
])
def test_zero_copy_decision(mode: str, info: DeviceInfo, expected: bool) -> None:
    assert resolve_zero_copy(mode, info) is expected


def test_forcing_zero_copy_where_host_memory_cannot_be_mapped_names_the_key() -> None:
    with pytest.raises(BackendError, match=r"model.zero_copy = \"on\".*cannot map host memory"):
        resolve_zero_copy("on", NO_MAPPING)
    with pytest.raises(BackendError, match="is not one of"):
        resolve_zero_copy("always", H200)


def test_device_info_as_dict() -> None:
    values = ORIN.as_dict()
    assert values["kind"] == "integrated" and values["compute_capability"] == "8.7"
    assert H200.kind == "discrete"
    assert set(ZERO_COPY_MODES) == {"auto", "on", "off"}
