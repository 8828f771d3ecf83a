"""Without PyGObject (``pip install ".[test]"`` does not pull it), every GStreamer capture test skips with the
same reason, and fails instead under STREAMD_REQUIRE=gstreamer. Run in a pytest subprocess where ``gi`` does not
import."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support import REPO

TESTS = "tests/sources/test_gstreamer.py"
# sys.modules["gi"] = None: ``import gi`` raises ImportError, as where PyGObject is not installed.
WITHOUT_GI = "import sys; sys.modules['gi'] = None; import pytest; sys.exit(pytest.main(sys.argv[1:]))"


def _pytest_without_gi(require: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "STREAMD_REQUIRE": require}
    return subprocess.run([sys.executable, "-c", WITHOUT_GI, "-q", "-rsf", "-p", "no:cacheprovider", TESTS],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_gstreamer_tests_skip_with_one_reason_without_pygobject() -> None:
    result = _pytest_without_gi("")
    assert result.returncode == 0, result.stdout + result.stderr
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    reasons = {line.split(": ", 1)[1] for line in skipped}
    assert len(skipped) == 4 and len(reasons) == 1, result.stdout  # the missing-file test among them
    assert "needs GStreamer through PyGObject" in reasons.pop()
    assert "failed" not in result.stdout


def test_gstreamer_tests_fail_without_pygobject_when_required() -> None:
    result = _pytest_without_gi("gstreamer")
    assert result.returncode == 1
    assert "test_missing_file_is_a_source_error" in result.stdout
    assert "STREAMD_REQUIRE includes 'gstreamer'" in result.stdout
