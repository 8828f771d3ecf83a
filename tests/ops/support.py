"""Helpers for tests/ops: the repository's ops files and Prometheus's binaries."""

from __future__ import annotations

import shutil

from tests.support import REPO, skip_unless_required

RULES = REPO / "ops" / "prometheus" / "streamd.rules.yml"
RULE_TESTS = REPO / "ops" / "prometheus" / "streamd.rules.test.yml"
DASHBOARD = REPO / "ops" / "grafana" / "streamd.json"


def prometheus_binary(name: str) -> str:
    """The path of ``prometheus`` or ``promtool``; skips (fails under STREAMD_REQUIRE) without it."""
    path = shutil.which(name)
    if path is None:
        skip_unless_required("prometheus", f"needs {name} (Debian package prometheus)")
    return path  # type: ignore[return-value]
