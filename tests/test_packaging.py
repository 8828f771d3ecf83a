"""What ``pip install ".[test]"`` pulls and what CI (.ci/run) installs and builds: the test extra installs on a
machine without C build dependencies; CI installs the GStreamer and docs extras as well and builds the docs."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib


def _extras() -> dict[str, list[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return project["optional-dependencies"]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower() for requirement in requirements}


def test_test_extra_needs_no_c_build_dependencies() -> None:
    extras = _extras()
    # PyGObject builds from source against libgirepository and cairo: not in the extra a new user installs first.
    assert "pygobject" not in _names(extras["test"])
    assert "pygobject" in _names(extras["gstreamer"])
    assert "mkdocs-material>=9.5" in extras["docs"]


def test_ci_installs_every_test_extra_and_builds_the_docs_before_pytest() -> None:
    script = (REPO / ".ci" / "run").read_text()
    assert subprocess.run(["bash", "-n", str(REPO / ".ci" / "run")]).returncode == 0
    commands = [line.strip() for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    install = commands.index('python -m pip install -q ".[test,gstreamer,docs]"')
    docs = commands.index('mkdocs build --strict -d "$(mktemp -d)"')
    tests = commands.index("python -m pytest -q")
    apt = next(i for i, command in enumerate(commands) if command.startswith("apt-get install"))
    assert apt < install < docs < tests


def test_license_is_the_apache_2_0_text_pyproject_names() -> None:
    import hashlib  # noqa: PLC0415

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_bytes()
    # apache.org's LICENSE-2.0.txt, byte for byte (Debian ships it as /usr/share/common-licenses/Apache-2.0).
    assert hashlib.md5(text).hexdigest() == "3b83ef96387f14655fc854ddc3c6bd57"
    assert text.lstrip().startswith(b"Apache License\n") and b"TERMS AND CONDITIONS" in text
