"""Sinks: bridges that carry the daemon's messages to other systems ([[sinks]] in the config).

The pipeline thread hands each published message to ``Sinks.offer``, which sorts it by its topic and
puts it in each interested sink's bounded buffer without waiting (streamd.sinks.buffer); each sink's
own thread sends from there. A broker that is slow, down or refusing costs counted drops, never
pipeline time.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence

from streamd.config.schema import SinkConfig, SourceConfig
from streamd.errors import StreamdError
from streamd.metrics.definitions import StreamdMetrics

log = logging.getLogger(__name__)

_EVENTS_PREFIX = b"events/"

# Each sink kind's class as "module:class", imported when a config names the kind; and the optional
# package a kind needs, with the extra that installs it (a config naming the kind without it stops at start).
SINK_TYPES: dict[str, str] = {
    "mqtt": "streamd.sinks.mqtt:MqttSink",
    "webhook": "streamd.sinks.webhook:WebhookSink",
    "nats": "streamd.sinks.nats:NatsSink",
}
REQUIRES: dict[str, tuple[str, str, str]] = {  # kind -> (module, its distribution, streamd's extra)
    "mqtt": ("paho.mqtt.client", "paho-mqtt", "mqtt"),
    "nats": ("nats", "nats-py", "nats"),
}


def sink_type(kind: str) -> type:
    """The class of ``kind``'s sink; a StreamdError naming what to install when its package is missing."""
    if kind in REQUIRES:
        module, distribution, extra = REQUIRES[kind]
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise StreamdError(f"[[sinks]] kind = \"{kind}\" needs {distribution}: pip install 'streamd[{extra}]'") \
                from error
    module_name, name = SINK_TYPES[kind].split(":")
    return getattr(importlib.import_module(module_name), name)


class Sinks:
    def __init__(self, configs: Sequence[SinkConfig], sources: Sequence[SourceConfig],
                 metrics: StreamdMetrics | None, model_id: str = "") -> None:
        from streamd.sinks.mqtt import DETECTIONS, EVENTS  # noqa: PLC0415

        self._events_kind, self._detections_kind = EVENTS, DETECTIONS
        self.sinks = [sink_type(config.kind)(config, sources, metrics, model_id) for config in configs]
        # Which sinks take which topic, decided once: the pipeline thread only looks up bytes.
        self._events = [s for s in self.sinks if {"events", "counts"} & set(s.config.carries)]
        carrying = [s for s in self.sinks if "detections" in s.config.carries]
        self._detections_any = [s for s in carrying if not s.config.sources]  # also sources a reload adds
        self._detections: dict[bytes, list] = {}
        for sink in carrying:
            for source_id in sink.config.sources:
                self._detections.setdefault(source_id.encode(), list(self._detections_any)).append(sink)

    def start(self) -> None:
        for sink in self.sinks:
            sink.start()

    def offer(self, parts: list[bytes]) -> None:
        """A published ``[topic, payload]``: into the buffers of the sinks that carry it. Never waits."""
        topic = parts[0]
        if topic.startswith(_EVENTS_PREFIX):
            if self._events:
                source_id = topic[len(_EVENTS_PREFIX):].decode()
                for sink in self._events:
                    sink.offer(self._events_kind, source_id, parts[1])
            return
        sinks = self._detections.get(topic, self._detections_any)
        if sinks:
            source_id = topic.decode()
            for sink in sinks:
                sink.offer(self._detections_kind, source_id, parts[1])

    def close(self) -> None:
        for sink in self.sinks:
            sink.request_stop()  # all stop flushing at once
        for sink in self.sinks:
            sink.close()
