"""``streamd proxy``: ZeroMQ's own XSUB/XPUB proxy (``zmq.proxy_steerable``), so N daemons (one per
GPU or per box) feed one endpoint.

The XSUB side connects to every daemon's publisher; the XPUB side binds the one endpoint
subscribers use. Subscriptions flow upstream, messages downstream, unchanged (``[topic, payload]``).
With a key pair, both sides speak CURVE: upstream as a client of each daemon (whose authorised
folder holds the proxy's public key), downstream as a server with its own authorised folder. A slow
subscriber costs itself messages (XPUB's per-subscriber drop at ``send_hwm``), never the others.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import zmq

from streamd.errors import StreamdError
from streamd.publish.curve import (
    ClientAuthorizer,
    KeyPair,
    RefusalLog,
    is_loopback_endpoint,
    make_curve_client,
    make_curve_server,
)
from streamd.publish.publisher import shared_context

log = logging.getLogger(__name__)

_CONTROL_ENDPOINT = "inproc://streamd-proxy-control"


@dataclass(frozen=True)
class ProxySettings:
    upstreams: tuple[str, ...]  # the daemons' publish endpoints
    bind: str  # where subscribers connect
    send_hwm: int
    key_pair: KeyPair | None = None  # the proxy's own: CURVE client upstream, CURVE server downstream
    upstream_server_keys: tuple[bytes, ...] = field(default=())  # one per upstream (or one for all)
    authorized_keys: str = ""  # folder of the subscribers' .key files

    def server_key_for(self, index: int) -> bytes | None:
        if not self.upstream_server_keys:
            return None
        return self.upstream_server_keys[index if len(self.upstream_server_keys) > 1 else 0]


class Proxy:
    """Sockets made and bound in ``__init__`` (errors before anything runs); ``run()`` forwards until
    ``stop()``; ``close()`` releases the sockets and the authenticator, safe twice."""

    def __init__(self, settings: ProxySettings) -> None:
        if settings.upstream_server_keys and len(settings.upstream_server_keys) not in (1, len(settings.upstreams)):
            raise StreamdError(f"{len(settings.upstream_server_keys)} upstream server keys for "
                               f"{len(settings.upstreams)} upstreams: give one for all, or one per upstream")
        context = shared_context()
        self._authorizer: ClientAuthorizer | None = None
        self._frontend = context.socket(zmq.XSUB)
        self._backend = context.socket(zmq.XPUB)
        self._control = context.socket(zmq.PAIR)
        self._steer = context.socket(zmq.PAIR)
        for socket in (self._frontend, self._backend, self._control, self._steer):
            socket.setsockopt(zmq.LINGER, 0)
        self._backend.setsockopt(zmq.SNDHWM, settings.send_hwm)
        self._closed = False
        try:
            self._connect_upstreams(settings)
            self._bind_downstream(settings)
            self._control.bind(_CONTROL_ENDPOINT)
            self._steer.connect(_CONTROL_ENDPOINT)
        except (zmq.ZMQError, StreamdError) as error:
            self.close()
            if isinstance(error, StreamdError):
                raise
            raise StreamdError(f"proxy: {error}") from error
        self.bound_endpoint = self._backend.getsockopt_string(zmq.LAST_ENDPOINT)

    def _connect_upstreams(self, settings: ProxySettings) -> None:
        for index, endpoint in enumerate(settings.upstreams):
            server_key = settings.server_key_for(index)
            if settings.key_pair is not None and server_key is not None:
                # CURVE options are read at connect(): each upstream gets its own server key.
                make_curve_client(self._frontend, settings.key_pair, server_key)
            elif not is_loopback_endpoint(endpoint):
                log.warning("proxy: reading %s in plaintext (no --key/--upstream-key)", endpoint)
            self._frontend.connect(endpoint)

    def _bind_downstream(self, settings: ProxySettings) -> None:
        if settings.key_pair is not None and settings.authorized_keys:
            make_curve_server(self._backend, settings.key_pair)
            self._authorizer = ClientAuthorizer(shared_context(), settings.authorized_keys,
                                                refusals=RefusalLog(where=f"proxy {settings.bind}"))
            self._authorizer.watch(self._backend)
        elif not is_loopback_endpoint(settings.bind):
            log.warning("proxy: publishing in plaintext on %s, which other hosts can reach: give --key and "
                        "--authorized-keys", settings.bind)
        self._backend.bind(settings.bind)

    def run(self) -> None:
        """Forward until ``stop()`` (from another thread)."""
        zmq.proxy_steerable(self._frontend, self._backend, None, self._control)

    def stop(self) -> None:
        if not self._closed and not self._steer.closed:
            self._steer.send(b"TERMINATE")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for socket in (self._steer, self._control, self._backend, self._frontend):
            if not socket.closed:
                socket.close(0)
        if self._authorizer is not None:
            self._authorizer.close()


def run_proxy(settings: ProxySettings, stop: threading.Event) -> int:
    """Run until ``stop`` is set; exit status 0."""
    proxy = Proxy(settings)
    forwarder = threading.Thread(target=proxy.run, name="proxy", daemon=True)
    try:
        forwarder.start()
        log.info("proxy: %d upstream(s) -> %s%s", len(settings.upstreams), proxy.bound_endpoint,
                 " (CURVE)" if settings.key_pair is not None else "")
        stop.wait()
        proxy.stop()
        forwarder.join(5.0)
    finally:
        proxy.close()
    return 0
