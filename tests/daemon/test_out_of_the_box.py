"""A fresh install: `streamd run` with no config at all shows real detections, and `streamd
subscribe` with no argument prints them. Run from an empty folder so nothing of the checkout is
used beyond the package itself (in CI, the installed one).

The defaults bind fixed ports (9400 for metrics, 5555 for ZeroMQ). On a shared machine another
daemon or test may hold them, and then this test would fail, or worse pass against the other
daemon. So the daemon and the subscriber run in a private network namespace of their own
(``unshare --net --map-root-user``), where both ports are certainly free. Where namespaces are not
permitted, the test runs on the host's loopback and first checks that nothing answers on 9400.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from streamd.config.schema import DEFAULT_METRICS_BIND
from tests.support import REPO, http_get

# Runs in the (private) network namespace: the daemon, /healthz, `streamd subscribe`, SIGTERM.
DRIVER = r"""
import json, subprocess, sys, time, urllib.request, urllib.error
log = open("daemon.log", "wb")
daemon = subprocess.Popen([sys.executable, "-m", "streamd", "run"], stdout=log, stderr=subprocess.STDOUT)
result = {"health": None}
deadline = time.monotonic() + 60
while time.monotonic() < deadline and result["health"] is None and daemon.poll() is None:
    try:
        with urllib.request.urlopen("http://" + sys.argv[1] + "/healthz", timeout=2) as response:
            result["health"] = response.status
    except urllib.error.HTTPError as error:
        result["health"] = error.code
    except OSError:
        time.sleep(0.1)
subscribe = subprocess.run([sys.executable, "-m", "streamd", "subscribe", "--count", "5"],
                           capture_output=True, text=True, timeout=60)
result.update(subscribe_status=subscribe.returncode, lines=subscribe.stdout.splitlines(),
              subscribe_stderr=subscribe.stderr[-2000:])
daemon.terminate()
result["daemon_status"] = daemon.wait(10)
print(json.dumps(result))
"""


@functools.cache
def _private_network() -> list[str]:
    """The command prefix for a private network namespace with loopback up, or [] if not permitted."""
    if not (shutil.which("unshare") and shutil.which("ip")):
        return []
    prefix = ["unshare", "--net", "--map-root-user", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
    return prefix if probe.returncode == 0 else []


def test_run_without_config_then_subscribe(tmp_path: Path) -> None:
    env = dict(os.environ)
    importable = subprocess.run([sys.executable, "-c", "import streamd"], cwd=tmp_path, env=env,
                                capture_output=True).returncode == 0
    if not importable:  # a checkout that is not pip-installed; in CI the installed copy is used
        env["PYTHONPATH"] = str(REPO)
    prefix = _private_network()
    if not prefix:
        try:
            status, _ = http_get(f"http://{DEFAULT_METRICS_BIND}/healthz", timeout=1)
        except OSError:
            pass  # nothing there: the ports are ours
        else:
            raise AssertionError(f"something already answers on {DEFAULT_METRICS_BIND} ({status}) and no "
                                 "private network namespace is available: stop it to run this test")
    driver = subprocess.run([*prefix, sys.executable, "-c", DRIVER, DEFAULT_METRICS_BIND], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=180)
    log = (tmp_path / "daemon.log").read_text(errors="replace") if (tmp_path / "daemon.log").exists() else ""
    assert driver.returncode == 0, driver.stderr + log
    result = json.loads(driver.stdout.splitlines()[-1])
    print(f"private network namespace: {bool(prefix)}; {result['lines'][:2]}")
    assert result["health"] == 200, log
    assert result["subscribe_status"] == 0, result["subscribe_stderr"]
    lines = result["lines"]
    assert len(lines) == 5 and all(line.startswith("demo #") for line in lines), lines
    shapes = {"circle", "square", "triangle", "cross"}
    assert any(any(shape in line for shape in shapes) for line in lines), lines
    assert result["daemon_status"] == 0, log
