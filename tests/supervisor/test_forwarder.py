"""The forwarder's renumbering and the merged scrape, on real messages and real exposition text."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streamd.publish.message import decode, encode
from streamd.supervisor.forwarder import renumber
from streamd.supervisor.scrape import merge_families
from streamd.yolox.detections import Detections


def message(source_id: str, sequence: int) -> list[bytes]:
    detections = Detections(np.array([[1, 2, 30, 40]], np.float32), np.array([0.9], np.float32),
                            np.array([0], np.int64))
    return encode(source_id, 7, sequence, 1.5, 2.5, 64, 48, "m", detections, ("person",))


def test_renumber_changes_only_the_sequence() -> None:
    topic, payload = message('tricky","sequence":99,"x', 41)
    renumbered, own = renumber(payload, 1234)
    assert own == 41
    before, after = decode([topic, payload]), decode([topic, renumbered])
    assert after.pop("sequence") == 1234
    before.pop("sequence")
    assert after == before


def test_merged_scrape_keeps_source_series_and_labels_the_rest_with_the_worker() -> None:
    texts = {}
    for worker, source in ((0, "a"), (1, "b")):
        registry = CollectorRegistry()
        Counter("streamd_frames_processed", "frames", ["source"], registry=registry).labels(source).inc(3)
        Histogram("streamd_batch_size", "batch", buckets=(1, 2), registry=registry).observe(1)
        Counter("streamd_messages_published", "published", registry=registry).inc(5)
        texts[worker] = generate_latest(registry).decode()
    own = CollectorRegistry()
    Counter("streamd_messages_published", "published", registry=own).inc(10)
    Gauge("streamd_workers", "workers", registry=own).set(2)
    merged = CollectorRegistry()

    class Merged:
        def collect(self):  # noqa: ANN202
            return merge_families(own.collect(), texts)

    merged.register(Merged())
    exposition = generate_latest(merged).decode()
    families = {f.name: f for f in text_string_to_metric_families(exposition)}
    frames = {s.labels["source"]: s.value for s in families["streamd_frames_processed"].samples
              if s.name.endswith("_total")}
    assert frames == {"a": 3.0, "b": 3.0}
    assert all("worker" not in s.labels for s in families["streamd_frames_processed"].samples)
    assert {s.labels["worker"] for s in families["streamd_batch_size"].samples} == {"0", "1"}
    published = [s for s in families["streamd_messages_published"].samples if s.name.endswith("_total")]
    assert [(s.labels, s.value) for s in published] == [({}, 10.0)]  # the public endpoint's own count
    hop = [s.value for s in families["streamd_worker_messages_published"].samples if s.name.endswith("_total")]
    assert sorted(hop) == [5.0, 5.0]
