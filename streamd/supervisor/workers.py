"""A worker process: spawned, watched through its notify socket, restarted with backoff when it dies.

Workers are ``streamd run`` itself in worker mode (``python -m streamd run --worker-spec FILE``),
spawned fresh rather than forked: a CUDA context must not cross a fork, a crash (even in native code)
ends only that process, and each worker runs exactly the single-process daemon that the rest of the
test suite covers.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from streamd.supervisor.notify_socket import NotifySocket
from streamd.supervisor.worker_spec import SUPERVISOR_PID_ENVIRONMENT, WorkerSpec, write_spec

log = logging.getLogger(__name__)

# A worker pings (WATCHDOG=1) every second while its pipeline takes frames; silent this long, it is
# hung and is killed and restarted.
WORKER_WATCHDOG_SECONDS = 10.0
# Restart delays: the first is short (a killed worker's cameras publish again within seconds), doubled
# per consecutive failure, reset once a worker has run this long; only a worker that had run this long
# takes over a standby process (a crash loop does not use them up).
RESTART_INITIAL_SECONDS = 0.2
RESTART_MAX_SECONDS = 30.0
RESTART_RESET_AFTER_SECONDS = 20.0
STOP_GRACE_SECONDS = 4.0
EXIT_CONFIG = 2


@dataclass
class Worker:
    index: int
    runtime_dir: Path
    spec: WorkerSpec
    process: subprocess.Popen | None = None
    notify: NotifySocket | None = None
    state: str = "stopped"  # starting, up, restarting, finished, stopped, failed
    ready_once: bool = False
    last_ping_monotonic: float = 0.0
    started_monotonic: float = 0.0
    restart_at_monotonic: float = 0.0
    failures_in_a_row: int = 0
    restarts: int = 0
    exit_code: int | None = None
    metrics_address: str = ""  # host:port of the worker's own /metrics, from its READY=1
    preview_address: str = ""
    status: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    standby: bool = False  # a spare: model loaded, no sources, waiting to take over a worker's share
    spec_file: Path | None = None  # where its process reads its share (a spare that took over keeps its own)

    @property
    def spec_path(self) -> Path:
        if self.spec_file is None:
            self.spec_file = self.runtime_dir / f"{'standby' if self.standby else 'worker'}-{self.index}.json"
        return self.spec_file

    @property
    def name(self) -> str:
        return f"standby for GPU {self.spec.device}" if self.standby else f"worker {self.index}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        write_spec(self.spec_path, self.spec)
        if self.notify is None:
            self.notify = NotifySocket(self.runtime_dir / f"notify-{self.index}.sock")
        env = {**os.environ, **self.extra_env, "NOTIFY_SOCKET": str(self.notify.path),
               "WATCHDOG_USEC": str(int(WORKER_WATCHDOG_SECONDS * 1e6)),
               "STREAMD_WORKER": "standby" if self.standby else str(self.index),
               SUPERVISOR_PID_ENVIRONMENT: str(os.getpid())}
        env.pop("WATCHDOG_PID", None)
        env.pop("LISTEN_FDS", None)
        command = [sys.executable, "-m", "streamd", "run", "--worker-spec", str(self.spec_path)]
        self.process = subprocess.Popen(command + (["--standby"] if self.standby else []), env=env,
                                        stdin=subprocess.DEVNULL)
        self.state = "starting"
        self.started_monotonic = self.last_ping_monotonic = time.monotonic()
        self.metrics_address = self.preview_address = ""
        self.exit_code = None

    def update_spec(self, spec: WorkerSpec) -> bool:
        """A reload's share for this worker; True when it differs (the caller signals the worker)."""
        changed = spec.worker_document() != self.spec.worker_document()
        self.spec = spec
        if changed:
            write_spec(self.spec_path, spec)
        return changed

    def read_notifications(self, now: float) -> None:
        if self.notify is None:
            return
        for fields in self.notify.receive():
            if "STATUS" in fields:
                self.status = fields["STATUS"]
            if fields.get("READY") == "1" and fields.get("STREAMD_STANDBY") == "1":
                self.state = "standby"
                self.last_ping_monotonic = now
                continue
            if fields.get("READY") == "1":
                if self.state == "starting":
                    log.info("worker %d up (pid %s): %s", self.index, self.pid, self.status)
                self.state = "up"
                self.ready_once = True
                self.metrics_address = fields.get("STREAMD_METRICS", self.metrics_address)
                self.preview_address = fields.get("STREAMD_PREVIEW", self.preview_address)
                self.last_ping_monotonic = now
            if fields.get("WATCHDOG") == "1":
                self.last_ping_monotonic = now

    def take_over(self, spare: Worker, now: float) -> None:
        """This worker's share goes to ``spare``'s process (model already loaded): the spare reads this
        worker's spec from its own spec file on SIGHUP and binds this worker's endpoint."""
        write_spec(spare.spec_path, self.spec)
        spare.signal(signal.SIGHUP)
        self.close()
        self.process, self.notify, self.spec_file = spare.process, spare.notify, spare.spec_path
        spare.process = spare.notify = None
        self.state = "starting"
        self.started_monotonic = self.last_ping_monotonic = now
        self.metrics_address = self.preview_address = ""
        self.exit_code = None

    def ran_long_enough(self, now: float) -> bool:
        return now - self.started_monotonic >= RESTART_RESET_AFTER_SECONDS

    def poll_exit(self) -> int | None:
        if self.process is None:
            return None
        return self.process.poll()

    def hung(self, now: float) -> bool:
        return self.state == "up" and now - self.last_ping_monotonic > WORKER_WATCHDOG_SECONDS

    def alive_and_progressing(self, now: float) -> bool:
        return self.state == "up" and now - self.last_ping_monotonic <= WORKER_WATCHDOG_SECONDS

    def schedule_restart(self, now: float) -> float:
        """Mark for restart; the delay it waits."""
        if now - self.started_monotonic >= RESTART_RESET_AFTER_SECONDS:
            self.failures_in_a_row = 0
        delay = min(RESTART_MAX_SECONDS, RESTART_INITIAL_SECONDS * 2 ** self.failures_in_a_row)
        self.failures_in_a_row += 1
        self.restart_at_monotonic = now + delay
        self.state = "restarting"
        return delay

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.send_signal(signum)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def close(self) -> None:
        if self.notify is not None:
            self.notify.close()
            self.notify = None


def stop_workers(workers: list[Worker], grace_seconds: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM to every worker at once, SIGKILL to any still running after ``grace_seconds``."""
    for worker in workers:
        worker.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for worker in workers:
        if worker.process is None:
            continue
        try:
            worker.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("worker %d still running %.0f s after SIGTERM: killed", worker.index, grace_seconds)
            worker.kill()
            worker.process.wait()
        if worker.state not in ("finished", "failed"):
            worker.state = "stopped"
