"""Refused subscribers are visible: every connection CURVE turns away is counted by reason in
streamd_publish_auth_refused_total and logged with the peer's address, once and then as a summary a
minute per host and reason, while the authorised subscriber keeps its rate."""

from __future__ import annotations

import logging
import re
import shutil
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth

from streamd.metrics.definitions import AUTH_REFUSAL_REASONS
from streamd.publish.curve import REFUSAL_REASONS, RefusalLog, create_key_pair
from streamd.publish.subscriber import Subscriber
from tests.support import free_port, http_get, still_image_config, wait_for_http

DEADLINE_SECONDS = 60.0


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "keys"
    authorized = tmp_path / "authorized"
    authorized.mkdir()
    found = {"authorized": authorized}
    for name in ("server", "alice", "mallory"):
        public, secret = create_key_pair(folder, name)
        found[name], found[f"{name}_secret"] = public, secret
    shutil.copy(found["alice"], authorized / "alice.key")
    return found


def refused_client(endpoint: str, keys: dict[str, Path], how: str) -> zmq.Socket:
    """A SUB socket that the server refuses: ``unknown_key`` (mallory), ``plaintext``, ``wrong_server_key``
    (alice, but with her own key as the server's), ``forged`` (alice's public key, another secret)."""
    socket = zmq.Context.instance().socket(zmq.SUB)
    socket.linger = 0
    server_public, _ = zmq.auth.load_certificate(keys["server"])
    alice_public, alice_secret = zmq.auth.load_certificate(keys["alice_secret"])
    triples = {"unknown_key": (*zmq.auth.load_certificate(keys["mallory_secret"]), server_public),
               "wrong_server_key": (alice_public, alice_secret, alice_public),
               "forged": (alice_public, zmq.curve_keypair()[1], server_public)}
    if how in triples:
        socket.curve_publickey, socket.curve_secretkey, socket.curve_serverkey = triples[how]
    socket.subscribe(b"")
    socket.connect(endpoint)
    return socket


def metric(metrics_port: int, reason: str) -> float:
    _, body = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    match = re.search(rf'^streamd_publish_auth_refused_total{{reason="{reason}"}} (\S+)$', body, re.MULTILINE)
    assert match, body
    return float(match.group(1))


def test_refused_subscribers_are_counted_and_logged_with_their_address(daemon_factory, tiny_model: Path,
                                                                       tiny_image: Path,
                                                                       keys: dict[str, Path]) -> None:
    port, metrics_port = free_port(), free_port()
    config = still_image_config(tiny_model, tiny_image, port).replace(
        "[metrics]\nenabled = false", f'curve_secret_key = "{keys["server_secret"]}"\n'
        f'curve_authorized_keys = "{keys["authorized"]}"\n[metrics]\nbind = "127.0.0.1:{metrics_port}"')
    daemon = daemon_factory(config)
    wait_for_http(f"http://127.0.0.1:{metrics_port}/healthz", DEADLINE_SECONDS)
    endpoint = f"tcp://127.0.0.1:{port}"
    assert all(metric(metrics_port, reason) == 0 for reason in AUTH_REFUSAL_REASONS)  # declared at start
    with Subscriber(endpoint, server_key=keys["server"], client_key=keys["alice_secret"]) as alice:
        assert alice.receive(DEADLINE_SECONDS) is not None, daemon.log()
        refused = [refused_client(endpoint, keys, how)
                   for how in ("unknown_key", "plaintext", "wrong_server_key", "forged")]
        try:
            # 3 s: the wrong-key clients retry every 0.1 s, tens of refusals each; alice keeps 20 fps.
            received = len(alice.collect(3.0))
            for socket in refused:
                assert socket.poll(0) == 0  # nothing came through
        finally:
            for socket in refused:
                socket.close(0)
    assert received >= 0.7 * 20 * 3, received
    time.sleep(0.5)
    counts = {reason: metric(metrics_port, reason) for reason in AUTH_REFUSAL_REASONS}
    # A plaintext client is refused for the mechanism, or hangs up itself first (a broken-off handshake).
    assert counts["unknown_key"] >= 1 and counts["plaintext"] + counts["protocol"] >= 1, counts
    assert counts["crypto"] >= 10, counts  # two clients retrying, each refused again and again
    log = daemon.log()
    lines = [line for line in log.splitlines() if "CURVE refused" in line]
    mallory_key = zmq.auth.load_certificate(keys["mallory"])[0].decode()
    unknown = [line for line in lines if REFUSAL_REASONS["unknown_key"] in line]
    assert len(unknown) == 1 and "from 127.0.0.1" in unknown[0] and mallory_key in unknown[0], lines
    assert "WARNING" in unknown[0] and f"on {endpoint}" in unknown[0]
    # A plaintext client is turned away so fast that its address may be gone before it is read.
    plaintext = [line for line in lines if REFUSAL_REASONS["plaintext"] in line or REFUSAL_REASONS["protocol"] in line]
    assert 1 <= len(plaintext) <= 4, lines
    assert all(re.search(r"from (127\.0\.0\.1:\d+|an unknown address) ", line) for line in plaintext), lines
    # Tens of crypto refusals from one host: one line (a summary follows at most once a minute), and one
    # more if some came from "an unknown address".
    crypto = [line for line in lines if REFUSAL_REASONS["crypto"] in line]
    assert 1 <= len(crypto) <= 2 and any(re.search(r"from 127\.0\.0\.1:\d+ ", line) for line in crypto), lines
    print(f"refusals counted: {counts}; log lines: {len(lines)}")


def test_refusal_log_summarises_per_host_and_reason(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    counted: list[str] = []
    refusals = RefusalLog(counted.append, "tcp://0.0.0.0:5555", interval_seconds=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="streamd.publish.curve"):
        for tenth in range(1201):  # two minutes of a client retrying ten times a second
            now[0] = tenth / 10
            refusals.refused("crypto", f"10.0.0.9:{40000 + tenth}")
        refusals.refused("unknown_key", "10.0.0.9", "rq:A4G&cb9y*1Pp}w9Lt]Hx!7Q8$Y%C0FzIvi.3^")
        refusals.refused("crypto", "10.0.0.10:41000")
    assert len(counted) == 1203 and set(counted) == {"crypto", "unknown_key"}
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 5, messages
    assert messages[0] == ("CURVE refused a connection from 10.0.0.9:40000 on tcp://0.0.0.0:5555: "
                           f"{REFUSAL_REASONS['crypto']}")
    assert messages[1].startswith("CURVE refused 600 more connection(s) from 10.0.0.9:40600 ")
    assert messages[2].startswith("CURVE refused 600 more connection(s) from 10.0.0.9:41200 ")
    assert "(1201 in all; summarised at most every 60 s)" in messages[2]
    assert "public key rq:A4G" in messages[3] and REFUSAL_REASONS["unknown_key"] in messages[3]
    assert messages[4].startswith("CURVE refused a connection from 10.0.0.10:41000 ")


def test_the_metric_names_every_reason_the_publisher_gives() -> None:
    assert tuple(REFUSAL_REASONS) == AUTH_REFUSAL_REASONS
