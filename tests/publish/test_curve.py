"""CURVE: only authorised subscribers get detections; keys are ZeroMQ's own (zmq.auth)."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamd.publish.curve import create_key_pair, is_loopback_endpoint, load_key_pair
from streamd.publish.publisher import Publisher
from streamd.publish.subscriber import Subscriber
from tests.support import REPO, free_port, still_image_config

DEADLINE_SECONDS = 60.0


def curve_config(model: Path, image: Path, port: int, secret: Path, authorized: Path) -> str:
    return still_image_config(model, image, port).replace(
        "[metrics]", f'curve_secret_key = "{secret}"\ncurve_authorized_keys = "{authorized}"\n[metrics]')


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """server, alice (authorised) and mallory (not): NAME.key / NAME.key_secret each."""
    folder = tmp_path / "keys"
    authorized = tmp_path / "authorized"
    authorized.mkdir()
    found = {"authorized": authorized}
    for name in ("server", "alice", "mallory"):
        public, secret = create_key_pair(folder, name)
        found[name], found[f"{name}_secret"] = public, secret
    shutil.copy(found["alice"], authorized / "alice.key")
    return found


def receive_count(subscriber: Subscriber, seconds: float) -> int:
    return len(subscriber.collect(seconds))


def test_authorised_subscriber_receives_others_get_nothing(daemon_factory, tiny_model: Path, tiny_image: Path,
                                                           keys: dict[str, Path]) -> None:
    port = free_port()
    daemon = daemon_factory(curve_config(tiny_model, tiny_image, port, keys["server_secret"], keys["authorized"]))
    endpoint = f"tcp://127.0.0.1:{port}"
    with Subscriber(endpoint, server_key=keys["server"], client_key=keys["alice_secret"]) as alice, \
            Subscriber(endpoint, server_key=keys["server"], client_key=keys["mallory_secret"]) as mallory, \
            Subscriber(endpoint) as plaintext:
        first = alice.receive(DEADLINE_SECONDS)
        assert first is not None, daemon.log()
        assert first["source"] == "still" and first["detections"]
        # The daemon publishes 20 fps: 2 s is about 40 messages for alice, and must be none for the others.
        assert receive_count(alice, 2.0) > 5
        assert receive_count(mallory, 0.5) == 0
        assert receive_count(plaintext, 0.5) == 0
    assert "CURVE: 1 authorised subscriber key(s)" in daemon.log()


def test_a_key_added_to_the_folder_is_authorised_without_restart(daemon_factory, tiny_model: Path,
                                                                 tiny_image: Path, keys: dict[str, Path]) -> None:
    port = free_port()
    daemon = daemon_factory(curve_config(tiny_model, tiny_image, port, keys["server_secret"], keys["authorized"]))
    endpoint = f"tcp://127.0.0.1:{port}"
    with Subscriber(endpoint, server_key=keys["server"], client_key=keys["alice_secret"]) as alice:
        assert alice.receive(DEADLINE_SECONDS) is not None, daemon.log()
    with Subscriber(endpoint, server_key=keys["server"], client_key=keys["mallory_secret"]) as mallory:
        assert receive_count(mallory, 1.0) == 0
    shutil.copy(keys["mallory"], keys["authorized"] / "mallory.key")
    # The folder is checked every second. A refused subscriber does not retry by itself (ZeroMQ stops
    # after an authentication failure): the next connection with the key gets in.
    wait_for_log(daemon, "CURVE: 2 authorised subscriber key(s)")
    with Subscriber(endpoint, server_key=keys["server"], client_key=keys["mallory_secret"]) as mallory:
        assert mallory.receive(DEADLINE_SECONDS) is not None, daemon.log()
    (keys["authorized"] / "mallory.key").unlink()
    wait_for_log(daemon, "CURVE: 1 authorised subscriber key(s)", after="mallory.key")
    with Subscriber(endpoint, server_key=keys["server"], client_key=keys["mallory_secret"]) as revoked:
        assert receive_count(revoked, 1.0) == 0


def wait_for_log(daemon, text: str, after: str = "") -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while text not in (daemon.log().split(after)[-1] if after else daemon.log()):
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.2)


@pytest.mark.parametrize("problem", ["missing", "public key only", "not a key file"])
def test_a_wrong_server_key_file_is_a_config_error_naming_the_key(tmp_path: Path, tiny_model: Path,
                                                                   tiny_image: Path, keys: dict[str, Path],
                                                                   problem: str) -> None:
    secret = {"missing": tmp_path / "nowhere.key_secret", "public key only": keys["server"],
              "not a key file": tiny_image}[problem]
    config = tmp_path / "curve.toml"
    config.write_text(curve_config(tiny_model, tiny_image, free_port(), secret, keys["authorized"]))
    result = subprocess.run([sys.executable, "-m", "streamd", "run", "--config", str(config)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert "config key 'publish.curve_secret_key'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_authorised_keys_folder_is_a_config_error(tmp_path: Path, tiny_model: Path, tiny_image: Path,
                                                            keys: dict[str, Path]) -> None:
    config = tmp_path / "curve.toml"
    config.write_text(curve_config(tiny_model, tiny_image, free_port(), keys["server_secret"], tmp_path / "none"))
    result = subprocess.run([sys.executable, "-m", "streamd", "run", "--config", str(config)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2 and "config key 'publish.curve_authorized_keys'" in result.stderr, result.stderr


def test_subscribe_cli_with_keys(daemon_factory, tiny_model: Path, tiny_image: Path, keys: dict[str, Path]) -> None:
    port = free_port()
    daemon_factory(curve_config(tiny_model, tiny_image, port, keys["server_secret"], keys["authorized"]))
    result = subprocess.run([sys.executable, "-m", "streamd", "subscribe", f"127.0.0.1:{port}", "--count", "2",
                             "--server-key", str(keys["server"]), "--key", str(keys["alice_secret"])],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    wrong = subprocess.run([sys.executable, "-m", "streamd", "subscribe", f"127.0.0.1:{port}", "--count", "1",
                            "--server-key", str(keys["server"]), "--key", str(keys["alice"])],
                           capture_output=True, text=True, timeout=60, cwd=REPO)
    assert wrong.returncode == 2 and "public key only" in wrong.stderr, wrong.stderr


def test_keys_command_writes_a_loadable_pair(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "streamd", "keys", "camera-host", "--folder", str(tmp_path)],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    pair = load_key_pair(tmp_path / "camera-host.key_secret")
    assert len(pair.public) == 40 and (tmp_path / "camera-host.key").is_file()
    assert (tmp_path / "camera-host.key_secret").stat().st_mode & 0o077 == 0


def test_plaintext_on_a_reachable_address_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="streamd.publish.publisher"):
        Publisher("tcp://0.0.0.0:*", 10).close()
        Publisher("tcp://127.0.0.1:*", 10).close()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "plaintext on tcp://0.0.0.0:*" in warnings[0]
    assert "curve_secret_key" in warnings[0]


@pytest.mark.parametrize(("endpoint", "loopback"), [
    ("tcp://127.0.0.1:5555", True), ("tcp://localhost:5555", True), ("tcp://[::1]:5555", True),
    ("ipc:///run/streamd.sock", True), ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False),
    ("tcp://192.168.1.5:5555", False), ("tcp://eth0:5555", False)])
def test_loopback_endpoints(endpoint: str, loopback: bool) -> None:
    assert is_loopback_endpoint(endpoint) is loopback
