"""The documented service install (docs/deploy/systemd.md) and the unit files agree: the units run the
streamd of the venv that page creates, so the documented layout needs no edit of the units."""

from __future__ import annotations

import re

import pytest

from tests.support import REPO
from tests.systemd.test_units import UNITS, unit_settings


@pytest.mark.parametrize("name", UNITS)
def test_unit_runs_the_streamd_of_the_documented_venv(name: str) -> None:
    page = (REPO / "docs" / "deploy" / "systemd.md").read_text()
    venv = re.search(r"sudo python3 -m venv (\S+)", page)
    assert venv, "docs/deploy/systemd.md: the service install creates a venv"
    assert f"sudo {venv.group(1)}/bin/pip install ." in page
    executable = unit_settings(name)["ExecStart"].split()[0]
    assert executable == f"{venv.group(1)}/bin/streamd"
