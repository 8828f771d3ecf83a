"""What a worker process runs: the service's config document narrowed to its share.

The supervisor writes one JSON file per worker (atomically, in its private runtime directory) and
the worker reads it at start and on every SIGHUP. The document is the user's TOML, parsed once by
the supervisor, so every worker validates the same text the supervisor did; only these keys differ:
its sources, an internal ``ipc://`` publish endpoint without CURVE (CURVE stays on the public side),
metrics and preview on free loopback ports (the supervisor serves the public ones), one GPU.
"""

from __future__ import annotations

import copy
import ctypes
import json
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamd.config.load import parse_config
from streamd.config.schema import Config

LOOPBACK_FREE_PORT = "127.0.0.1:0"
PR_SET_PDEATHSIG = 1
FORWARDER_WAIT_SECONDS = 10.0
SUPERVISOR_PID_ENVIRONMENT = "STREAMD_SUPERVISOR_PID"


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    source_ids: tuple[str, ...]
    publish_endpoint: str  # ipc://RUNTIME_DIR/worker-N.ipc
    device: int
    document: dict[str, Any]  # the user's config document, before narrowing
    base_dir: str  # relative paths in the document resolve against the config file's folder
    config_path: str  # for messages
    cpu_share: int = 0  # cores for this worker's CPU detectors when model.workers/threads are auto (0: all)

    def worker_document(self) -> dict[str, Any]:
        document = copy.deepcopy(self.document)
        wanted = set(self.source_ids)
        document["sources"] = [table for table in document["sources"] if table.get("id") in wanted]
        publish = {key: value for key, value in document.get("publish", {}).items()
                   if key not in ("curve_secret_key", "curve_authorized_keys")}
        # The supervisor's forwarder is the one subscriber: sources start once it has subscribed, so a
        # file's first frames are not published to nobody.
        publish.update(endpoint=self.publish_endpoint, wait_for_subscriber_seconds=FORWARDER_WAIT_SECONDS)
        document["publish"] = publish
        document["metrics"] = {**document.get("metrics", {}), "enabled": True, "bind": LOOPBACK_FREE_PORT}
        if document.get("preview", {}).get("enabled"):
            document["preview"] = {**document["preview"], "bind": LOOPBACK_FREE_PORT}
        document["daemon"] = {**document.get("daemon", {}), "workers": 1}
        model = document.setdefault("model", {})
        model["device"] = self.device
        if self.cpu_share and not model.get("workers") and not model.get("threads"):
            # K workers on C cores: each worker's CPU detectors share C / K of them, not all C each.
            model["workers"] = min(2, self.cpu_share)
            model["threads"] = max(1, self.cpu_share // model["workers"])
        return document

    def config(self) -> Config:
        return parse_config(self.worker_document(), self.base_dir, self.config_path)

    def standby_config(self) -> Config:
        """What a standby process builds its detector from: the model section, with a stand-in source
        (a config needs one; the standby opens none)."""
        document = self.worker_document()
        document["sources"] = [{"id": "standby", "kind": "synthetic"}]
        return parse_config(document, self.base_dir, self.config_path)

    def to_json(self) -> str:
        return json.dumps({"index": self.index, "source_ids": list(self.source_ids),
                           "publish_endpoint": self.publish_endpoint, "device": self.device,
                           "document": self.document, "base_dir": self.base_dir, "config_path": self.config_path,
                           "cpu_share": self.cpu_share})

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        data = json.loads(text)
        return cls(int(data["index"]), tuple(data["source_ids"]), data["publish_endpoint"], int(data["device"]),
                   data["document"], data["base_dir"], data["config_path"], int(data.get("cpu_share", 0)))


def write_spec(path: Path, spec: WorkerSpec) -> None:
    """Replace ``path`` atomically: a worker reading it on SIGHUP never sees half a file."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(spec.to_json())
    os.replace(temporary, path)


def read_spec(path: str | Path) -> WorkerSpec:
    return WorkerSpec.from_json(Path(path).read_text())


def follow_supervisor() -> None:
    """A worker ends with its supervisor, even one that was SIGKILLed (Linux: PR_SET_PDEATHSIG), so no
    worker outlives the service holding cameras and GPU memory."""
    supervisor_pid = int(os.environ.get(SUPERVISOR_PID_ENVIRONMENT, os.getppid()))
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != supervisor_pid:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def load_worker_config(path: str | Path) -> Config:
    """The worker's config from its spec file (at start and on each reload)."""
    return read_spec(path).config()


def source_ids(document: dict[str, Any]) -> Sequence[str]:
    return [str(table.get("id")) for table in document.get("sources", [])]
