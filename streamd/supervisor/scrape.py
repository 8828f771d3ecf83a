"""One /metrics for the whole service: each scrape reads every worker's own /metrics (loopback HTTP,
in parallel) and merges the families.

Chosen over prometheus_client's multiprocess mode, which would change how every metric is made
(files per process, no custom collectors, gauges needing a mode) and lose a dead worker's counters
into files to clean up. Here a worker is the single-process daemon, unchanged; a scrape costs one
loopback GET per worker.

Per-source series keep their labels as a single process has them (a source lives on one worker).
Series without a ``source`` label (inference stages, batches, build info) get ``worker="N"``. The
workers' own publish counters count the internal hop and are renamed ``streamd_worker_messages_*``;
``streamd_messages_published_total`` / ``_dropped_total`` are the public endpoint's, as before.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT_SECONDS = 2.0
_INTERNAL_HOP = {"streamd_messages_published": "streamd_worker_messages_published",
                 "streamd_messages_dropped": "streamd_worker_messages_dropped"}
# What only the public endpoint has (workers publish on ipc without CURVE): the supervisor's own series.
_PUBLIC_ONLY = {"streamd_publish_auth_refused"}


def fetch(address: str, path: str, timeout_seconds: float = SCRAPE_TIMEOUT_SECONDS) -> tuple[int, bytes]:
    """GET http://ADDRESS/PATH: status and body; (0, b"") when the worker does not answer."""
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=timeout_seconds) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (OSError, ValueError):
        return 0, b""


def fetch_all(addresses: Sequence[tuple[int, str]], path: str) -> dict[int, tuple[int, bytes]]:
    """The same path from every worker at once (worker index -> status, body)."""
    if not addresses:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(addresses))) as pool:
        results = pool.map(lambda item: (item[0], fetch(item[1], path)), addresses)
        return dict(results)


def worker_json(addresses: Sequence[tuple[int, str]], path: str) -> dict[int, dict]:
    replies = {}
    for index, (status, body) in fetch_all(addresses, path).items():
        if status:
            try:
                replies[index] = json.loads(body)
            except ValueError:
                continue
    return replies


def merge_families(own: Iterator[Metric], workers: dict[int, str]) -> list[Metric]:
    """The supervisor's own families and every worker's exposition text, one family per name."""
    merged: dict[str, Metric] = {}
    for metric in own:
        merged[metric.name] = metric
    for index, text in sorted(workers.items()):
        try:
            families = list(text_string_to_metric_families(text))
        except ValueError as error:
            log.warning("worker %d's metrics could not be parsed: %s", index, error)
            continue
        for family in families:
            if family.name in _PUBLIC_ONLY:
                continue
            name = _INTERNAL_HOP.get(family.name, family.name)
            target = merged.get(name)
            if target is None:
                target = merged[name] = Metric(name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                labels = sample.labels if "source" in sample.labels else {**sample.labels, "worker": str(index)}
                sample_name = sample.name.replace(family.name, name, 1) if name != family.name else sample.name
                target.samples.append(Sample(sample_name, labels, sample.value, sample.timestamp, sample.exemplar))
    return list(merged.values())


class WorkerMetrics:
    """A collector: the supervisor's registry plus every live worker's families."""

    def __init__(self, own: CollectorRegistry, addresses: Callable[[], Sequence[tuple[int, str]]]) -> None:
        self._own = own
        self._addresses = addresses

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        texts = {index: body.decode(errors="replace")
                 for index, (status, body) in fetch_all(self._addresses(), "/metrics").items() if status == 200}
        yield from merge_families(self._own.collect(), texts)
