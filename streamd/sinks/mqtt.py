"""MQTT sink: the daemon's events, detections and counts on an MQTT broker (Mosquitto, Home Assistant's).

Topics, under ``streamd/<node>``:

- ``<source>/events``: each ``streamd.events/1`` message as the ZeroMQ subscribers get it;
- ``<source>/detections``: each frame's ``streamd.detections/1`` message (filtered by source and class);
- ``<source>/counts/<zone>/occupancy``, ``<source>/counts/<zone>/alarm`` (``ON``/``OFF``),
  ``<source>/counts/<line>/in`` and ``.../out``: retained, from the events this sink has sent;
- ``availability``: ``online`` while connected, ``offline`` as the last will and on a clean stop.

One thread owns the client (paho-mqtt, run by ``loop()`` calls, so no callback races another thread).
Each connection gets a fresh client: what the previous one had in flight without an acknowledgement goes
back to the head of the buffer, so after a reconnect the buffered messages go first, in order (QoS 1:
at least once; a message the broker took whose acknowledgement was lost arrives twice).
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
from collections.abc import Sequence
from typing import Any

from streamd import __version__
from streamd.config.schema import SinkConfig, SourceConfig
from streamd.metrics.definitions import StreamdMetrics
from streamd.sinks.base import (
    BACKOFF_INITIAL_SECONDS,
    BACKOFF_MAX_SECONDS,
    DETECTIONS,
    EVENTS,
    JOURNAL_FLUSH_SECONDS,
    STOP_FLUSH_SECONDS,
    NumberedSink,
)
from streamd.sinks.journal import Record

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10.0
# Messages handed to the client and not yet acknowledged: enough to fill a link's round trip.
IN_FLIGHT = 100

__all__ = ["DETECTIONS", "EVENTS", "MqttSink", "topic_level"]


class _Rendered(list):
    """A buffered message as its publications (topic, payload, retain, counted as a sent message), with the
    number it was offered as."""

    def __init__(self, number: int, publications: list[tuple[str, bytes | str, bool, bool]]) -> None:
        super().__init__(publications)
        self.number = number


def topic_level(text: str) -> str:
    """``text`` as one topic level / Home Assistant object id part."""
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in text)


class MqttSink(NumberedSink):
    def __init__(self, config: SinkConfig, sources: Sequence[SourceConfig], metrics: StreamdMetrics | None,
                 model_id: str = "") -> None:
        super().__init__(config, metrics)
        self.prefix = f"streamd/{self.node}"
        self.availability_topic = f"{self.prefix}/availability"
        self._sources = list(sources)
        self._model_id = model_id
        self._classes = frozenset(config.classes)
        self._counts: dict[str, dict[str, Any]] = {}  # topic -> value (occupancy, in, out, alarm)
        self._occupants: dict[tuple[str, str], set[int]] = {}

    # -- the sink thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = BACKOFF_INITIAL_SECONDS
        last_problem = ""
        while not self._stop.is_set():
            client, problem = self._connect()
            if client is None:
                if problem != last_problem:  # one line per kind of failure, not one per retry
                    log.warning("sink %s: cannot connect to %s:%d: %s; retrying with backoff up to %.0f s",
                                self.name, self.config.host, self._port(), problem, BACKOFF_MAX_SECONDS)
                    last_problem = problem
                self._wait_keeping(backoff)
                backoff = min(BACKOFF_MAX_SECONDS, backoff * 2)
                continue
            log.info("sink %s: connected to %s:%d, publishing under %s/", self.name, self.config.host, self._port(),
                     self.prefix)
            last_problem = ""
            backoff = BACKOFF_INITIAL_SECONDS
            self._serve(client)
        self._keep()

    def _wait_keeping(self, seconds: float) -> None:
        """Wait ``seconds`` or until the sink stops; with buffer_path, what is offered meanwhile goes to disk."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0 and not self._stop.is_set():
            self._persist()
            self._stop.wait(min(remaining, JOURNAL_FLUSH_SECONDS))

    def _number_of(self, item: Any) -> int:
        return item.number if isinstance(item, _Rendered) else item[0]

    def _port(self) -> int:
        return self.config.port or (8883 if self.config.tls else 1883)

    def _connect(self) -> tuple[Any, str]:
        import paho.mqtt.client as mqtt  # noqa: PLC0415 (an optional extra: imported when a sink runs)

        # Worker processes each run the sink for their sources: a client id of its own each.
        worker = os.environ.get("STREAMD_WORKER")
        client_id = f"streamd-{self.node}-{self.name}" + (f"-worker{worker}" if worker else "")
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        if self.config.username:
            client.username_pw_set(self.config.username, self.config.password or None)
        if self.config.tls:
            client.tls_set(ca_certs=self.config.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        client.will_set(self.availability_topic, "offline", qos=1, retain=True)
        state: dict[str, Any] = {}
        client.on_connect = lambda _c, _u, _f, reason, _p: state.setdefault("connack", reason)
        client.on_disconnect = lambda _c, _u, _f, reason, _p: state.setdefault("disconnected", reason)
        client.on_publish = lambda _c, _u, mid, _reason, _p: state.setdefault("acked", []).append(mid)
        client.user_data_set(state)
        try:
            client.connect(self.config.host, self._port(), keepalive=self.config.keepalive_seconds)
        except (OSError, ssl.SSLError, ValueError) as error:
            return None, f"{type(error).__name__}: {error}"
        deadline = time.monotonic() + CONNECT_TIMEOUT_SECONDS
        while "connack" not in state and "disconnected" not in state and time.monotonic() < deadline:
            if client.loop(0.05) != mqtt.MQTT_ERR_SUCCESS and "connack" not in state:
                break
            if self._stop.is_set():
                break
            self._persist()
        reason = state.get("connack")
        if reason is None or reason.is_failure:
            client.loop_stop()
            try:
                client.disconnect()
            except Exception:  # noqa: BLE001 (a socket already gone)
                pass
            return None, f"the broker refused: {reason}" if reason is not None else "no answer from the broker"
        state["client"] = client
        return state, ""

    def _serve(self, state: dict[str, Any]) -> None:
        import paho.mqtt.client as mqtt  # noqa: PLC0415

        client = state["client"]
        self._set_connected(True)
        in_flight: dict[int, list | None] = {}  # mid -> the rendered message it counts for (None: counts none)
        qos = self.config.qos
        client.publish(self.availability_topic, "online", qos=1, retain=True)
        if self.config.home_assistant:
            for topic, payload in self.discovery():
                client.publish(topic, json.dumps(payload, separators=(",", ":")), qos=1, retain=True)
        for topic, value in self._counts.items():  # the broker may have lost its retained ones
            client.publish(topic, str(value), qos=qos, retain=True)
        stopping_at = 0.0
        while True:
            acked = state.get("acked")
            if acked:
                state["acked"] = []
                for mid in acked:
                    if in_flight.pop(mid, None) is not None:
                        self._count_sent()
            if "disconnected" in state:
                break
            if self._stop.is_set():
                stopping_at = stopping_at or time.monotonic()
                if (not len(self._buffer) and not in_flight) or time.monotonic() - stopping_at > STOP_FLUSH_SECONDS:
                    break
            room = IN_FLIGHT - len(in_flight)
            for message in self._buffer.take(room) if room > 0 else ():
                # Taken again after a lost connection, a message is already rendered: its counts were applied.
                rendered = message if isinstance(message, list) else self._render(message)
                for topic, payload, retain, counted in rendered:
                    info = client.publish(topic, payload, qos=qos, retain=retain)
                    # Refused for itself (too large, a bad topic); any other error is the connection
                    # breaking under it: in flight, back to the buffer with the others.
                    if info.rc in (mqtt.MQTT_ERR_PAYLOAD_SIZE, mqtt.MQTT_ERR_INVAL, mqtt.MQTT_ERR_QUEUE_SIZE):
                        if counted:
                            self._count_dropped("refused")
                        continue
                    if info.mid in state.get("acked", ()):  # QoS 0: written before publish returned
                        state["acked"].remove(info.mid)
                        if counted:
                            self._count_sent()
                    else:
                        in_flight[info.mid] = rendered if counted else None
            self._in_flight = len(in_flight)
            self._persist(rendered.number for rendered in in_flight.values() if rendered is not None)
            rc = client.loop(0.02 if len(self._buffer) or in_flight else 0.1)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                state.setdefault("disconnected", rc)
        self._set_connected(False)
        self._in_flight = 0
        unacked = [message for message in in_flight.values() if message is not None]
        if self._stop.is_set() and self._journal is None:
            self._count_dropped("stopped", len(unacked) + len(self._buffer.take(len(self._buffer))))
        else:
            # In flight and not acknowledged: first again on the next connection (or, stopping with buffer_path,
            # kept on disk), in the order they were sent. Not their retained counts: the next connection sends
            # every count's latest value before them.
            again = []
            for rendered in unacked:
                kept = [publication for publication in rendered if not publication[2]]
                if kept:
                    again.append(_Rendered(rendered.number, [(*kept[0][:3], True), *kept[1:]]))
                else:  # counts alone: what they said goes out on connecting
                    self._count_sent()
            self._count_dropped("buffer_full", self._buffer.put_front(again))
        if self._stop.is_set():
            client.publish(self.availability_topic, "offline", qos=1, retain=True)
            client.loop(0.1)
            client.disconnect()
            client.loop(0.1)
            return
        log.warning("sink %s: lost the broker; %d message(s) buffered", self.name, len(self._buffer))
        try:
            client.disconnect()
        except Exception:  # noqa: BLE001
            pass

    def _render(self, record: Record) -> _Rendered:
        """(topic, payload, retain, counted as a sent message) for one buffered message."""
        number, kind, source_id, payload = record
        base = f"{self.prefix}/{source_id}"
        if kind == DETECTIONS:
            if self._classes:
                document = json.loads(payload)
                wanted = [d for d in document.get("detections", []) if d.get("label") in self._classes]
                if not wanted:
                    return _Rendered(number, [])
                document["detections"] = wanted
                payload = json.dumps(document, separators=(",", ":")).encode()
            return _Rendered(number, [(f"{base}/detections", payload, False, True)])
        out: list[tuple[str, bytes | str, bool, bool]] = []
        if "events" in self.config.carries:
            out.append((f"{base}/events", payload, False, True))
        if "counts" in self.config.carries:
            for topic, value in self._update_counts(source_id, json.loads(payload)):
                out.append((topic, str(value), True, not out))  # counted once per message
        return _Rendered(number, out)

    def _update_counts(self, source_id: str, document: dict[str, Any]) -> list[tuple[str, Any]]:
        changed: dict[str, Any] = {}
        base = f"{self.prefix}/{source_id}/counts"
        for event in document.get("events", ()):
            kind = event.get("type")
            if kind == "line_cross":
                topic = f"{base}/{topic_level(event['line'])}/{event['direction']}"
                changed[topic] = self._counts[topic] = self._counts.get(topic, 0) + 1
            elif kind in ("zone_enter", "zone_exit"):
                occupants = self._occupants.setdefault((source_id, event["zone"]), set())
                track = event.get("track_id")
                if kind == "zone_enter":
                    occupants.add(track)
                else:
                    occupants.discard(track)
                topic = f"{base}/{topic_level(event['zone'])}/occupancy"
                changed[topic] = self._counts[topic] = len(occupants)
            elif kind in ("occupancy_start", "occupancy_end"):
                topic = f"{base}/{topic_level(event['zone'])}/alarm"
                changed[topic] = self._counts[topic] = "ON" if kind == "occupancy_start" else "OFF"
        return list(changed.items())

    def discovery(self) -> list[tuple[str, dict[str, Any]]]:
        """Home Assistant MQTT discovery: (config topic, payload) for each zone's occupancy (and alarm) and
        each line's in and out counts (docs/sinks.md shows one)."""
        node = topic_level(self.node)
        device = {"identifiers": [f"streamd_{node}"], "name": f"streamd {self.node}", "manufacturer": "streamd",
                  "model": self._model_id or "streamd", "sw_version": __version__}
        items: list[tuple[str, dict[str, Any]]] = []

        def add(component: str, object_id: str, name: str, state_topic: str, **extra: Any) -> None:
            unique_id = f"streamd_{node}_{object_id}"
            payload = {"name": name, "unique_id": unique_id, "object_id": unique_id, "state_topic": state_topic,
                       "availability_topic": self.availability_topic, "payload_available": "online",
                       "payload_not_available": "offline", "device": device, **extra}
            items.append((f"{self.config.discovery_prefix}/{component}/streamd_{node}/{object_id}/config", payload))

        for source in self._sources:
            sid = topic_level(source.id)
            base = f"{self.prefix}/{source.id}/counts"
            for zone in source.zones:
                zid = topic_level(zone.name)
                add("sensor", f"{sid}_{zid}_occupancy", f"{source.id} {zone.name} occupancy",
                    f"{base}/{zid}/occupancy", state_class="measurement", unit_of_measurement="objects",
                    icon="mdi:account-group")
                if zone.max_objects > 0:
                    add("binary_sensor", f"{sid}_{zid}_alarm", f"{source.id} {zone.name} occupancy alarm",
                        f"{base}/{zid}/alarm", payload_on="ON", payload_off="OFF", device_class="occupancy")
            for line in source.lines:
                lid = topic_level(line.name)
                for direction in ("in", "out"):
                    add("sensor", f"{sid}_{lid}_{direction}", f"{source.id} {line.name} {direction}",
                        f"{base}/{lid}/{direction}", state_class="total_increasing", unit_of_measurement="objects",
                        icon="mdi:counter")
        return items
