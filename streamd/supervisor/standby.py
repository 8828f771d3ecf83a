"""A standby worker: a process that has imported everything and built the detector for its GPU, with
no sources, waiting. When a worker dies the supervisor writes that worker's share into the standby's
spec file and sends SIGHUP: the standby becomes the worker without paying for interpreter start-up,
imports, CUDA context and engine load again, which are most of a restart."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from streamd.daemon.sdnotify import SystemdNotifier
from streamd.supervisor.worker_spec import load_worker_config, read_spec

log = logging.getLogger(__name__)

WAIT_SLICE_SECONDS = 0.05  # how soon a SIGHUP (take over) or SIGTERM is seen


def run_standby(spec_path: str | Path, stop: threading.Event, reload_requested: threading.Event,
                become_worker: callable) -> int:  # noqa: ANN001
    """Build the detector, tell the supervisor (READY=1, STREAMD_STANDBY=1), wait; on SIGHUP run as the
    worker the spec file now describes, with the detector already built; on SIGTERM end."""
    from streamd.inference.factory import build_detectors  # noqa: PLC0415 - the heavy imports, done here

    model = read_spec(spec_path).standby_config().model
    detectors = build_detectors(model)
    notifier = SystemdNotifier()
    notifier.ready("standby", STREAMD_STANDBY="1")
    log.info("standby on GPU %d: model loaded, waiting to take over a worker", model.device)
    while not reload_requested.wait(WAIT_SLICE_SECONDS):
        if stop.is_set():
            for detector in detectors:
                detector.close()
            return 0
    reload_requested.clear()
    spec = read_spec(spec_path)
    os.environ["STREAMD_WORKER"] = str(spec.index)
    config = load_worker_config(spec_path)
    log.info("standby takes over worker %d: %s", spec.index, ", ".join(spec.source_ids))
    return become_worker(config, (model, detectors))
