"""CURVE authentication and encryption for the ZeroMQ sockets, with pyzmq's own ``zmq.auth``.

No cryptography of streamd's own: key pairs are ZeroMQ certificates written by
``zmq.auth.create_certificates`` (``NAME.key`` holds the public key, ``NAME.key_secret`` both), the
server side is ``curve_server`` with its secret key, and which clients may connect is decided by
pyzmq's ZAP handler (``ThreadAuthenticator``) from a folder of authorised clients' ``*.key`` files.
That folder is re-read whenever its listing or a file in it changes (checked every
``KEYS_RELOAD_INTERVAL_SECONDS``), so adding or revoking a subscriber needs no restart.

Refused connections are counted and logged with the peer's address (:class:`RefusalLog`): an unknown
key by the ZAP handler, which has the address and the key; handshakes that fail before ZAP is asked (a
plaintext client, the wrong server key, a public key without its secret, something that is not
ZeroMQ) by a socket monitor on the server socket (:class:`HandshakeWatch`), which reads the address
from the accepted connection.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket as _socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

from streamd.errors import KeyFileError, StreamdError
from streamd.log_throttle import REPEAT_SUMMARY_SECONDS, LogThrottle

log = logging.getLogger(__name__)

KEYS_RELOAD_INTERVAL_SECONDS = 1.0
# ZAP applies per context; one ThreadAuthenticator serves every CURVE server socket of the process.
_ZAP_DOMAIN = "*"
_TCP_HOST = re.compile(r"^tcp://(?P<host>\[[^]]+\]|[^:]+):")
# Why a connection was refused: the `reason` label of streamd_publish_auth_refused_total, and what the
# log line says of it.
REFUSAL_REASONS = {
    "unknown_key": "its key is not in the authorised-keys folder",
    "plaintext": "it does not speak CURVE (a plaintext subscriber?)",
    "crypto": "its handshake does not decrypt (the wrong server key, or a public key without its secret key)",
    "protocol": "the handshake broke off (a plaintext subscriber that hung up first, not a ZeroMQ client, or a "
                "protocol error)",
}
# Hosts whose refusals are summarised separately; past this many the longest quiet one is forgotten.
MAX_REFUSING_HOSTS = 256
_MONITOR_POLL_MILLISECONDS = 100


@dataclass(frozen=True)
class KeyPair:
    public: bytes  # Z85, 40 characters
    secret: bytes


def create_key_pair(folder: str | Path, name: str) -> tuple[Path, Path]:
    """``NAME.key`` (public: give it to the other side) and ``NAME.key_secret`` (keep it) in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(folder, name)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)


def load_key_pair(path: str | Path) -> KeyPair:
    """A ``.key_secret`` file's key pair; KeyFileError saying what is wrong with it."""
    public, secret = _load_certificate(path)
    if secret is None:
        raise KeyFileError(f"{path} holds a public key only; give the .key_secret file `streamd keys` wrote")
    return KeyPair(public, secret)


def load_public_key(path: str | Path) -> bytes:
    """The public key of a ``.key`` (or ``.key_secret``) file."""
    return _load_certificate(path)[0]


def _load_certificate(path: str | Path) -> tuple[bytes, bytes | None]:
    if not Path(path).is_file():
        raise KeyFileError(f"key file {path} does not exist (create a key pair with `streamd keys`)")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise KeyFileError(f"{path} is not a ZeroMQ key file ({error}); create one with `streamd keys`") from error
    for name, key in (("public", public), ("secret", secret)):
        if key is not None and len(key) != 40:
            raise KeyFileError(f"{path}: the {name} key is not a 40-character Z85 CURVE key")
    return public, secret


def check_authorized_keys_folder(path: str | Path) -> None:
    if not Path(path).is_dir():
        raise KeyFileError(f"authorised-keys folder {path} does not exist (put each subscriber's NAME.key there)")


def read_authorized_keys(folder: str | Path) -> dict[bytes, str]:
    """Public key -> file name of every readable ``*.key`` in ``folder``; a bad file is logged and skipped,
    so one broken file does not lock every subscriber out."""
    keys: dict[bytes, str] = {}
    for path in sorted(Path(folder).glob("*.key")):
        try:
            keys[load_public_key(path)] = path.name
        except KeyFileError as error:
            log.warning("authorised key skipped: %s", error)
    return keys


def is_loopback_endpoint(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on 127.0.0.0/8, ::1 or localhost; False for 0.0.0.0, *,
    interface names and other hosts (reachable from elsewhere)."""
    if not endpoint.startswith("tcp://"):
        return True
    match = _TCP_HOST.match(endpoint)
    host = match.group("host").strip("[]") if match else ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_curve_server(socket: zmq.Socket, key_pair: KeyPair) -> None:
    """Before bind: the socket only speaks CURVE, as the server with this key pair."""
    socket.curve_secretkey = key_pair.secret
    socket.curve_publickey = key_pair.public
    socket.curve_server = True


def make_curve_client(socket: zmq.Socket, key_pair: KeyPair, server_public_key: bytes) -> None:
    """Before connect: the socket talks CURVE to the server with this public key."""
    socket.curve_secretkey = key_pair.secret
    socket.curve_publickey = key_pair.public
    socket.curve_serverkey = server_public_key


class RefusalLog:
    """Counts refused connections (``count(reason)``) and logs them with the peer's address: the first
    refusal from a host for a reason at WARNING, then at most one summary line a minute with a count, so
    a client retrying ten times a second costs one line a minute. Thread-safe."""

    def __init__(self, count: Callable[[str], None] | None = None, where: str = "",
                 interval_seconds: float = REPEAT_SUMMARY_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._count = count
        self._where = f" on {where}" if where else ""
        self._interval_seconds = interval_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._throttles: OrderedDict[tuple[str, str], LogThrottle] = OrderedDict()
        self.refused_total = 0

    def refused(self, reason: str, address: str, key: str = "") -> None:
        """One connection refused, for ``reason`` (a REFUSAL_REASONS key), from ``address`` ("" unknown)."""
        if self._count is not None:
            self._count(reason)
        host = _host_of(address)
        with self._lock:
            self.refused_total += 1
            throttle = self._throttles.pop((host, reason), None) or LogThrottle(self._interval_seconds, self._clock)
            self._throttles[(host, reason)] = throttle  # most recent last
            while len(self._throttles) > MAX_REFUSING_HOSTS:
                self._throttles.popitem(last=False)
            due = throttle.occurred()
        if due is None:
            return
        peer = (address or "an unknown address") + (f" (public key {key})" if key else "")
        why = REFUSAL_REASONS.get(reason, reason)
        if throttle.total == 1:
            log.warning("CURVE refused a connection from %s%s: %s", peer, self._where, why)
        else:
            log.warning("CURVE refused %d more connection(s) from %s%s since the last line: %s (%d in all; "
                        "summarised at most every %g s)", due[0], peer, self._where, why, throttle.total,
                        self._interval_seconds)


def _host_of(address: str) -> str:
    """``127.0.0.1`` of ``127.0.0.1:5555``, ``::1`` of ``[::1]:5555``; the address itself otherwise."""
    if address.startswith("["):
        return address[1:].split("]", 1)[0]
    if address.count(":") == 1:
        return address.split(":", 1)[0]
    return address


def _peer_address(fd: int) -> str:
    """The remote address of a connection's file descriptor (a duplicate is asked, never the original);
    "" when it is already closed or not a network socket."""
    try:
        duplicate = os.dup(fd)
    except OSError:
        return ""
    try:
        connection = _socket.socket(fileno=duplicate)
    except OSError:
        os.close(duplicate)
        return ""
    with connection:
        try:
            peer = connection.getpeername()
        except OSError:
            return ""
    if isinstance(peer, tuple):
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(peer or "")


class HandshakeWatch:
    """Reports a CURVE server socket's handshakes that fail before ZAP is asked (a plaintext client, the
    wrong server key, a public key without its secret, not ZeroMQ) to a :class:`RefusalLog`, through a
    ZeroMQ socket monitor read in its own thread.

    The monitor says which connection was accepted (its file descriptor, whose peer address is read at
    once) and how a handshake ended (without the descriptor); outcomes are paired with accepted
    connections in the order they came. Counting is exact; with several clients connecting at the same
    instant an address may be paired with another's outcome, and a connection refused before its
    address could be read (a plaintext client is turned away within microseconds) is "an unknown
    address". Create it before ``bind()``, from the socket's thread; ``close()`` after the socket."""

    _EVENTS = (zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
               | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
               | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_MONITOR_STOPPED)

    def __init__(self, socket: zmq.Socket, refusals: RefusalLog) -> None:
        self._refusals = refusals
        self._monitor = socket.get_monitor_socket(self._EVENTS)
        self._stop = threading.Event()
        # Accepted connections whose handshake has not ended: (file descriptor, address), oldest first.
        self._handshaking: deque[tuple[int, str]] = deque()
        self._thread = threading.Thread(target=self._run, name="curve-handshakes", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._monitor.poll(_MONITOR_POLL_MILLISECONDS):
                    continue
                event = recv_monitor_message(self._monitor)
                if event["event"] == zmq.EVENT_MONITOR_STOPPED:
                    break
                self._handle(event["event"], event["value"])
        except zmq.ZMQError:  # the context is terminating
            pass
        finally:
            self._monitor.close(0)

    def _handle(self, event: int, value: int) -> None:
        if event == zmq.EVENT_ACCEPTED:
            self._handshaking.append((value, _peer_address(value)))
            return
        if event == zmq.EVENT_DISCONNECTED:  # closed before its handshake ended: no outcome will come
            self._handshaking = deque(entry for entry in self._handshaking if entry[0] != value)
            return
        _, address = self._handshaking.popleft() if self._handshaking else (-1, "")
        # Succeeded: nothing to say; failed at ZAP: the authenticator reports it, with the key.
        if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            self._refusals.refused(_protocol_reason(value), address)
        elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            self._refusals.refused("protocol", address)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


def _protocol_reason(code: int) -> str:
    if code == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "plaintext"
    if code == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        return "crypto"
    return "protocol"


class _ReportingAuthenticator(ThreadAuthenticator):
    """pyzmq's ZAP handler, telling a RefusalLog about each connection it refuses (address and key)."""

    def __init__(self, context: zmq.Context, refusals: RefusalLog, log: logging.Logger) -> None:
        super().__init__(context, log=log)
        self._refusals = refusals
        self._request: list[bytes] = []

    def handle_zap_message(self, msg: list[bytes]):  # async in recent pyzmq: its coroutine is returned as is
        self._request = msg  # requests are handled one at a time, in the authenticator's thread
        return super().handle_zap_message(msg)

    def _send_zap_reply(self, request_id: bytes, status_code: bytes, status_text: bytes,
                        user_id: str = "anonymous") -> None:
        super()._send_zap_reply(request_id, status_code, status_text, user_id)
        if status_code == b"200":
            return
        request = self._request
        address = request[3].decode("utf-8", "replace") if len(request) > 3 else ""
        mechanism = request[5] if len(request) > 5 else b""
        key = ""
        if mechanism == b"CURVE" and len(request) == 7 and len(request[6]) == 32:
            key = z85.encode(request[6]).decode("ascii")
        self._refusals.refused("unknown_key" if mechanism == b"CURVE" else "protocol", address, key)


class ClientAuthorizer:
    """pyzmq's ZAP handler for ``context``, allowing the keys in ``folder``, re-read on change; refusals
    go to ``refusals`` (logged only, when none is given). ``watch(socket)`` reports a server socket's
    failed handshakes there too.

    One per context (ZAP binds a fixed inproc endpoint); ``close()`` is safe to call twice."""

    def __init__(self, context: zmq.Context, folder: str | Path,
                 reload_interval_seconds: float = KEYS_RELOAD_INTERVAL_SECONDS,
                 refusals: RefusalLog | None = None) -> None:
        check_authorized_keys_folder(folder)
        self.folder = Path(folder)
        self._interval_seconds = reload_interval_seconds
        self.refusals = refusals or RefusalLog()
        self._authenticator = _ReportingAuthenticator(context, self.refusals, logging.getLogger(f"{__name__}.zap"))
        self._watches: list[HandshakeWatch] = []
        self._stop = threading.Event()
        self._signature: tuple = ()
        self.reloads = 0
        try:
            self._authenticator.start()
        except zmq.ZMQError as error:
            raise StreamdError(f"cannot start the CURVE authenticator: {error} (one per process)") from error
        self._reload_if_changed()
        self._watcher = threading.Thread(target=self._watch, name="curve-keys", daemon=True)
        self._watcher.start()

    @property
    def authorized_count(self) -> int:
        return len(self._authenticator.certs.get(_ZAP_DOMAIN, {}))

    def _folder_signature(self) -> tuple:
        try:
            return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in self.folder.glob("*.key")))
        except OSError:  # a file removed between listing and stat: the next check sees the result
            return ("changing",)

    def _reload_if_changed(self) -> None:
        signature = self._folder_signature()
        if signature == self._signature:
            return
        self._signature = signature
        keys = read_authorized_keys(self.folder)
        # Authenticator.certs is what configure_curve fills (domain -> {public key: True}); set here
        # directly so one broken file is skipped instead of failing the whole folder.
        self._authenticator.certs[_ZAP_DOMAIN] = dict.fromkeys(keys, True)
        self._authenticator.allow_any = False
        self.reloads += 1
        log.info("CURVE: %d authorised subscriber key(s) from %s%s", len(keys), self.folder,
                 f": {', '.join(sorted(keys.values()))}" if keys else "")

    def _watch(self) -> None:
        while not self._stop.wait(self._interval_seconds):
            try:
                self._reload_if_changed()
            except Exception:  # keep the last good set rather than dying
                log.exception("re-reading %s failed; the previous keys stay authorised", self.folder)

    def watch(self, socket: zmq.Socket) -> None:
        """Report ``socket``'s failed handshakes as refusals too (before its ``bind()``, from its thread)."""
        self._watches.append(HandshakeWatch(socket, self.refusals))

    def close(self) -> None:
        """After the watched sockets are closed (their monitors stop with them)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._watcher.join(5.0)
        for watch in self._watches:
            watch.close()
        self._authenticator.stop()
