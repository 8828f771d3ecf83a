"""``streamd proxy``: three daemons, one endpoint, CURVE on both sides."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from streamd.publish.curve import create_key_pair
from streamd.publish.subscriber import Subscriber
from tests.support import REPO, free_port, still_image_config

DEADLINE_SECONDS = 90.0
DAEMONS = 3


def test_three_daemons_through_one_curve_proxy(daemon_factory, tmp_path: Path, tiny_model: Path,
                                               tiny_image: Path) -> None:
    keys = tmp_path / "keys"
    proxy_public, proxy_secret = create_key_pair(keys, "proxy")
    client_public, client_secret = create_key_pair(keys, "client")
    stranger_public, stranger_secret = create_key_pair(keys, "stranger")
    daemons_authorized = tmp_path / "daemons-authorized"  # the daemons let the proxy in, nobody else
    daemons_authorized.mkdir()
    shutil.copy(proxy_public, daemons_authorized)
    proxy_authorized = tmp_path / "proxy-authorized"  # the proxy lets the client in
    proxy_authorized.mkdir()
    shutil.copy(client_public, proxy_authorized)

    upstream_arguments: list[str] = []
    for index in range(DAEMONS):
        server_public, server_secret = create_key_pair(keys, f"daemon{index}")
        port = free_port()
        config = still_image_config(tiny_model, tiny_image, port).replace('id = "still"', f'id = "cam{index}"')
        config = config.replace("fps = 20", "fps = 5").replace(
            "[metrics]", f'curve_secret_key = "{server_secret}"\ncurve_authorized_keys = "{daemons_authorized}"\n'
                         "[metrics]")
        daemon_factory(config, name=f"daemon{index}")
        upstream_arguments += ["--upstream", f"127.0.0.1:{port}", "--upstream-key", str(server_public)]

    proxy_port = free_port()
    proxy_log = tmp_path / "proxy.log"
    with open(proxy_log, "wb") as log_file:
        proxy = subprocess.Popen([sys.executable, "-m", "streamd", "proxy", *upstream_arguments,
                                  "--bind", f"tcp://127.0.0.1:{proxy_port}", "--key", str(proxy_secret),
                                  "--authorized-keys", str(proxy_authorized)],
                                 stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        endpoint = f"tcp://127.0.0.1:{proxy_port}"
        seen: dict[str, list[int]] = {}
        with Subscriber(endpoint, server_key=proxy_public, client_key=client_secret) as client, \
                Subscriber(endpoint, server_key=proxy_public, client_key=stranger_secret) as stranger:
            deadline = time.monotonic() + DEADLINE_SECONDS
            while (len(seen) < DAEMONS or min(len(v) for v in seen.values()) < 3) and time.monotonic() < deadline:
                message = client.receive(1.0)
                if message is not None:
                    seen.setdefault(message["source"], []).append(message["frame_index"])
            assert sorted(seen) == [f"cam{i}" for i in range(DAEMONS)], proxy_log.read_text()
            assert all(indices == sorted(indices) for indices in seen.values())  # each source in frame order
            assert stranger.receive(0.5) is None
        # A plaintext subscriber straight at a daemon gets nothing either.
        first_upstream = upstream_arguments[1]
        with Subscriber(f"tcp://{first_upstream}") as direct:
            assert direct.receive(0.5) is None
        proxy.send_signal(signal.SIGTERM)
        assert proxy.wait(10) == 0
        assert "proxy: 3 upstream(s)" in proxy_log.read_text()
    finally:
        if proxy.poll() is None:
            proxy.kill()
            proxy.wait(10)
