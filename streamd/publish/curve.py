"""CURVE authentication and encryption for the ZeroMQ sockets, with pyzmq's own ``zmq.auth``.

No cryptography of streamd's own: key pairs are ZeroMQ certificates written by
``zmq.auth.create_certificates`` (``NAME.key`` holds the public key, ``NAME.key_secret`` both), the
server side is ``curve_server`` with its secret key, and which clients may connect is decided by
pyzmq's ZAP handler (``ThreadAuthenticator``) from a folder of authorised clients' ``*.key`` files.
That folder is re-read whenever its listing or a file in it changes (checked every
``KEYS_RELOAD_INTERVAL_SECONDS``), so adding or revoking a subscriber needs no restart.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from streamd.errors import KeyFileError, StreamdError

log = logging.getLogger(__name__)

KEYS_RELOAD_INTERVAL_SECONDS = 1.0
# ZAP applies per context; one ThreadAuthenticator serves every CURVE server socket of the process.
_ZAP_DOMAIN = "*"
_TCP_HOST = re.compile(r"^tcp://(?P<host>\[[^]]+\]|[^:]+):")


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


class ClientAuthorizer:
    """pyzmq's ZAP handler for ``context``, allowing the keys in ``folder``, re-read on change.

    One per context (ZAP binds a fixed inproc endpoint); ``close()`` is safe to call twice."""

    def __init__(self, context: zmq.Context, folder: str | Path,
                 reload_interval_seconds: float = KEYS_RELOAD_INTERVAL_SECONDS) -> None:
        check_authorized_keys_folder(folder)
        self.folder = Path(folder)
        self._interval_seconds = reload_interval_seconds
        self._authenticator = ThreadAuthenticator(context, log=logging.getLogger(f"{__name__}.zap"))
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

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._watcher.join(5.0)
        self._authenticator.stop()
