"""The supervisor: one ``streamd run`` with ``daemon.workers`` > 1.

It owns the config, assigns the sources to workers (streamd.supervisor.assignment), starts them,
forwards their messages to the public endpoint (streamd.supervisor.forwarder), serves one /metrics,
/healthz and /readyz over all of them (streamd.supervisor.scrape), one preview, tells systemd
READY=1 once every worker is up and WATCHDOG=1 only while every worker is alive and making progress,
restarts a worker that dies, and passes a reload on to the workers whose share changed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from streamd import __version__
from streamd.config.load import parse_config, read_document, split_bind
from streamd.config.schema import ALL_GPUS, Config
from streamd.daemon.reload import diff_configs
from streamd.daemon.sdnotify import SystemdNotifier
from streamd.errors import StreamdError
from streamd.metrics.definitions import AUTH_REFUSAL_REASONS
from streamd.metrics.http import MetricsServer
from streamd.publish.publisher import Publisher
from streamd.supervisor.assignment import assign, worker_count
from streamd.supervisor.forwarder import Forwarder
from streamd.supervisor.scrape import WorkerMetrics, worker_json
from streamd.supervisor.worker_spec import WorkerSpec
from streamd.supervisor.workers import EXIT_CONFIG, RESTART_RESET_AFTER_SECONDS, Worker, stop_workers

log = logging.getLogger(__name__)

TICK_SECONDS = 0.1
WATCHDOG_PING_SECONDS = 1.0
EXIT_OK, EXIT_FAILURE = 0, 1


class SupervisorMetrics:
    """The supervisor's own series; the workers' come through the merged scrape."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages_published = Counter("streamd_messages_published", "messages sent to subscribers",
                                          registry=registry)
        self.messages_dropped = Counter("streamd_messages_dropped",
                                        "messages dropped: a subscriber's queue (send_hwm) was full",
                                        registry=registry)
        self.workers = Gauge("streamd_workers", "worker processes configured", registry=registry)
        self.worker_up = Gauge("streamd_worker_up", "1 while the worker is running and making progress",
                               ["worker"], registry=registry)
        self.worker_restarts = Counter("streamd_worker_restarts", "workers restarted after they died or hung",
                                       ["worker"], registry=registry)
        self.worker_sources = Gauge("streamd_worker_sources", "sources assigned to the worker", ["worker"],
                                    registry=registry)
        # CURVE lives on the public endpoint, so its refusals are counted here (streamd.publish.publisher).
        self.publish_auth_refused = Counter(
            "streamd_publish_auth_refused", "Connections to the CURVE publisher refused, by reason (see the "
            "single-process metric of the same name).", ["reason"], registry=registry)
        for reason in AUTH_REFUSAL_REASONS:
            self.publish_auth_refused.labels(reason)


def devices_of(config: Config) -> list[int]:
    """The GPUs the workers spread over (``model.device``: one, a list, or every visible one)."""
    if config.model.devices == (ALL_GPUS,):
        from streamd.cuda.runtime import device_count  # noqa: PLC0415 - the GPU path only

        return list(range(device_count())) or [0]
    return list(config.model.devices) or [config.model.device]


class Supervisor:
    def __init__(self, config: Config, document: dict, base_dir: Path) -> None:
        self.config = config
        self._document = document
        self._base_dir = base_dir
        self.devices = devices_of(config)
        self.worker_total = min(worker_count(config, self.devices), len(config.sources))
        runtime_parent = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0] or None
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="streamd-", dir=runtime_parent))  # mode 0700
        self.registry = CollectorRegistry()
        self.metrics = SupervisorMetrics(self.registry)
        self.assignment = assign(config.sources, self.worker_total)
        self._worker_of_source = {s.encode(): w for s, w in self.assignment.items()}
        self.workers = [Worker(index, self.runtime_dir, self._spec(index)) for index in range(self.worker_total)]
        # One standby per GPU once every worker is up: a dead worker's share goes to it (streamd.supervisor.standby).
        self.standbys: dict[int, Worker] = {}
        self._standby_count = 0
        self.publisher: Publisher | None = None
        self.forwarder: Forwarder | None = None
        self._forward_thread: threading.Thread | None = None
        self.http: MetricsServer | None = None
        self.preview = None
        self.ready = threading.Event()

    # -- building -------------------------------------------------------------------------------
    def _spec(self, index: int) -> WorkerSpec:
        ids = tuple(s.id for s in self.config.sources if self.assignment[s.id] == index)
        return WorkerSpec(index, ids, f"ipc://{self.runtime_dir}/worker-{index}.ipc",
                          self.devices[index % len(self.devices)], self._document, str(self._base_dir),
                          self.config.path, max(1, _cores() // self.worker_total))

    def start(self) -> None:
        publish = self.config.publish
        self.publisher = Publisher(publish.endpoint, publish.send_hwm, self.metrics, publish.curve_secret_key,
                                   publish.curve_authorized_keys)
        self.forwarder = Forwarder(self.publisher, lambda topic: self._worker_of_source.get(topic, -1))
        for worker in self.workers:
            self.forwarder.connect(worker.spec.publish_endpoint)
        self._forward_thread = threading.Thread(target=self.forwarder.run, name="forwarder", daemon=True)
        self._forward_thread.start()
        self.metrics.workers.set(self.worker_total)
        if publish.wait_for_subscriber_seconds > 0 and not self._wait_for_subscriber(
                publish.wait_for_subscriber_seconds):
            log.warning("no subscriber after %.1f s (publish.wait_for_subscriber_seconds): starting anyway",
                        publish.wait_for_subscriber_seconds)
        for worker in self.workers:
            self.metrics.worker_sources.labels(str(worker.index)).set(len(worker.spec.source_ids))
            self.metrics.worker_restarts.labels(str(worker.index))
            worker.start()
        if self.config.metrics.enabled:
            host, port = split_bind(self.config.metrics.bind)
            self.http = MetricsServer(host, port, _MergedRegistry(self), self.health, self.readiness)
            self.http.start()
        if self.config.preview.enabled:
            from streamd.supervisor.preview import SupervisorPreview  # noqa: PLC0415

            host, port = split_bind(self.config.preview.bind, "preview.bind")
            self.preview = SupervisorPreview(host, port, self)
            self.preview.start()
        log.info("streamd %s supervising %d worker(s) for %d source(s), publishing on %s (runtime directory %s)",
                 __version__, self.worker_total, len(self.config.sources), self.publisher.bound_endpoint,
                 self.runtime_dir)

    def _wait_for_subscriber(self, timeout_seconds: float) -> bool:
        deadline = time.monotonic() + timeout_seconds
        while self.publisher is not None and self.publisher.poll_subscriptions(0.02) == 0:
            if time.monotonic() >= deadline:
                return False
        return True

    # -- running ---------------------------------------------------------------------------------
    def tick(self) -> int | None:
        """Watch the workers once; an exit status when the service must end."""
        now = time.monotonic()
        for worker in self.workers:
            worker.read_notifications(now)
            code = worker.poll_exit()
            if code is not None and worker.state in ("starting", "up"):
                worker.exit_code = code
                if code == 0:
                    worker.state = "finished"
                    log.info("worker %d finished: its sources ended", worker.index)
                elif not worker.ready_once:
                    worker.state = "failed"
                    log.error("worker %d failed to start (exit status %d)", worker.index, code)
                    return EXIT_CONFIG if code == EXIT_CONFIG else EXIT_FAILURE
                else:
                    self._replace(worker, code, now)
            elif worker.hung(now):
                log.error("worker %d (pid %s) sent no watchdog ping for %.0f s: killing and restarting it",
                          worker.index, worker.pid, now - worker.last_ping_monotonic)
                worker.kill()
            if worker.state == "restarting" and now >= worker.restart_at_monotonic:
                worker.restarts += 1
                self.metrics.worker_restarts.labels(str(worker.index)).inc()
                if self.forwarder is not None:
                    self.forwarder.worker_restarted(worker.index)
                worker.start()
            self.metrics.worker_up.labels(str(worker.index)).set(1.0 if worker.alive_and_progressing(now) else 0.0)
        if not self.ready.is_set() and all(w.state in ("up", "finished") for w in self.workers):
            self.ready.set()
        if self.ready.is_set():
            self._keep_standbys(now)
        if all(w.state == "finished" for w in self.workers):
            return EXIT_OK
        return None

    def _replace(self, worker: Worker, code: int, now: float) -> None:
        """A worker that ran a while and died: its standby takes its share at once; otherwise a restart
        after the backoff delay."""
        standby = self.standbys.get(worker.spec.device)
        if worker.ran_long_enough(now) and standby is not None and standby.state == "standby":
            old_pid = worker.pid
            del self.standbys[worker.spec.device]
            worker.take_over(standby, now)
            worker.restarts += 1
            worker.failures_in_a_row = 0
            self.metrics.worker_restarts.labels(str(worker.index)).inc()
            if self.forwarder is not None:
                self.forwarder.worker_restarted(worker.index)
            log.error("worker %d (pid %s) died (%s); the standby (pid %s) takes over its sources %s",
                      worker.index, old_pid, _exit_text(code), worker.pid, ", ".join(worker.spec.source_ids))
            return
        delay = worker.schedule_restart(now)
        log.error("worker %d (pid %s) died (%s); restarting it in %.1f s, its sources %s",
                  worker.index, worker.pid, _exit_text(code), delay, ", ".join(worker.spec.source_ids))

    def _keep_standbys(self, now: float) -> None:
        """One standby process per GPU of the workers, started again when it was used or died."""
        for device in sorted({w.spec.device for w in self.workers}):
            standby = self.standbys.get(device)
            if standby is not None:
                standby.read_notifications(now)
                if standby.poll_exit() is None:
                    continue
                standby.close()
                if now - standby.started_monotonic < RESTART_RESET_AFTER_SECONDS:
                    continue  # it dies at start: do not spin; try again later
            template = next(w for w in self.workers if w.spec.device == device)
            spec = dataclasses.replace(template.spec, index=-1, source_ids=())
            self._standby_count += 1
            standby = Worker(self.worker_total + self._standby_count, self.runtime_dir, spec, standby=True)
            standby.start()
            self.standbys[device] = standby

    def all_alive(self) -> bool:
        now = time.monotonic()
        forwarding = self._forward_thread is not None and self._forward_thread.is_alive()
        return forwarding and all(w.alive_and_progressing(now) or w.state == "finished" for w in self.workers)

    def worker_addresses(self, kind: str = "metrics") -> list[tuple[int, str]]:
        return [(w.index, w.metrics_address if kind == "metrics" else w.preview_address) for w in self.workers
                if w.state == "up" and (w.metrics_address if kind == "metrics" else w.preview_address)]

    def health(self) -> tuple[bool, dict]:
        now = time.monotonic()
        states = {str(w.index): {"state": "up" if w.alive_and_progressing(now) else w.state, "pid": w.pid,
                                 "restarts": w.restarts, "sources": list(w.spec.source_ids)} for w in self.workers}
        forwarding = self._forward_thread is not None and self._forward_thread.is_alive()
        # Alive while forwarding and no worker is stuck: a worker being restarted is the supervisor at work.
        alive = forwarding and not any(w.hung(now) for w in self.workers)
        return alive, {"pipeline": "alive" if alive else "dead", "workers": states}

    def readiness(self) -> tuple[bool, dict]:
        alive, detail = self.health()
        sources: dict[str, str] = {}
        replies = worker_json(self.worker_addresses(), "/readyz")
        for worker in self.workers:
            reply = replies.get(worker.index, {})
            for source_id in worker.spec.source_ids:
                sources[source_id] = reply.get("sources", {}).get(source_id, "worker " + worker.state)
        ready = self.ready.is_set() and alive and any(state == "streaming" for state in sources.values())
        return ready, {"sources": sources, "workers": detail["workers"]}

    # -- reload ----------------------------------------------------------------------------------
    def reload(self) -> bool:
        """Re-read the file; give each worker its new share; SIGHUP the workers whose share changed."""
        started = time.monotonic()
        try:
            document, base_dir, name = read_document(self.config.path)
            new = parse_config(document, base_dir, name)
        except StreamdError as error:
            log.error("reload refused, still running the previous config: %s", " ".join(str(error).split()))
            return False
        diff = diff_configs(self.config, new)
        restart_only = [key for key in diff.restart_only if key != "daemon.workers"]
        if new.daemon.workers != self.config.daemon.workers:
            restart_only.append("daemon.workers")
        if restart_only:
            log.warning("reload: %s changed; these take effect at the next restart (a reload re-applies "
                        "[[sources]], [model] and daemon.log_level)", ", ".join(restart_only))
        kept = {f.name: getattr(self.config, f.name) for f in dataclasses.fields(Config)
                if f.name not in ("sources", "model", "path")}
        self.config = dataclasses.replace(new, **kept)
        self._document, self._base_dir = document, base_dir
        self.assignment = assign(new.sources, self.worker_total, self.assignment)
        # Removed sources keep their entry: the last messages they published are still on the way.
        self._worker_of_source = {**self._worker_of_source,
                                  **{s.encode(): w for s, w in self.assignment.items()}}
        if diff.model_changed and self.standbys:  # their model is the old one: new standbys load the new
            stop_workers(list(self.standbys.values()))
            for standby in self.standbys.values():
                standby.close()
            self.standbys.clear()
        signalled = []
        for worker in self.workers:
            spec = self._spec(worker.index)
            changed = worker.update_spec(spec)
            self.metrics.worker_sources.labels(str(worker.index)).set(len(spec.source_ids))
            if not spec.source_ids:
                if worker.state in ("starting", "up", "restarting"):
                    stop_workers([worker])
                    worker.state = "finished"
                continue
            if worker.state in ("finished", "stopped") and changed:
                worker.start()
                signalled.append(worker.index)
            elif changed and worker.state in ("starting", "up"):
                worker.signal(signal.SIGHUP)
                signalled.append(worker.index)
        log.info("reload passed on in %.2f s: %s; worker(s) %s given their new share", time.monotonic() - started,
                 "nothing changed" if diff.empty else diff.summary(), ", ".join(map(str, signalled)) or "none")
        return True

    # -- stopping --------------------------------------------------------------------------------
    def stop(self) -> None:
        stop_workers(self.workers + list(self.standbys.values()))
        if self.forwarder is not None:
            self.forwarder.stop()
        if self._forward_thread is not None:
            self._forward_thread.join(2.0)
        for part in (self.preview, self.http, self.publisher):
            if part is not None:
                try:
                    part.close()
                except Exception:  # keep tearing down the rest
                    log.exception("closing %s failed", type(part).__name__)
        for worker in (*self.workers, *self.standbys.values()):
            worker.close()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)


class _MergedRegistry:
    """What /metrics exposes: the supervisor's series merged with every live worker's."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._collector = WorkerMetrics(supervisor.registry, supervisor.worker_addresses)

    def collect(self):  # noqa: ANN201 - a registry's interface
        return self._collector.collect()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def run_supervisor(config: Config, stop: threading.Event, notifier: SystemdNotifier | None = None,
                   reload_requested: threading.Event | None = None) -> int:
    """Run the service's workers until ``stop`` is set or every worker's sources have ended."""
    notifier = notifier or SystemdNotifier()
    document, base_dir, _ = read_document(config.path)
    supervisor = Supervisor(config, document, base_dir)
    told_ready = False
    last_ping = 0.0
    try:
        supervisor.start()
        while not stop.wait(TICK_SECONDS):
            status = supervisor.tick()
            if status is not None:
                return status
            if supervisor.ready.is_set() and not told_ready:
                told_ready = True
                notifier.ready(f"{supervisor.worker_total} worker(s), {len(supervisor.config.sources)} source(s)")
                log.info("all %d worker(s) up", supervisor.worker_total)
            if reload_requested is not None and reload_requested.is_set():
                reload_requested.clear()
                notifier.reloading()
                supervisor.reload()
                notifier.ready(f"{supervisor.worker_total} worker(s), {len(supervisor.config.sources)} source(s)")
            now = time.monotonic()
            if told_ready and now - last_ping >= WATCHDOG_PING_SECONDS and supervisor.all_alive():
                last_ping = now
                notifier.watchdog()
        return EXIT_OK
    finally:
        notifier.stopping()
        supervisor.stop()
        log.info("streamd stopped")
