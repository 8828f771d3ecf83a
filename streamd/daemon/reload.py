"""Reload without restart (SIGHUP, ``systemctl reload``): re-read the config and apply the difference.

- sources added start; removed ones stop (thread joined, reader and its decoder closed, pinned
  buffers freed); changed ones restart (frame index from 0); untouched ones keep their capture
  thread, slot and frame index, so their frames run on without a gap;
- a source whose zones or lines alone changed is not restarted: the running pipeline takes the new
  ones up at its next frame, and zones and lines that did not change carry on (counts, tracks in them);
- a changed ``[model]`` builds the new detector first, while the old one keeps running, then swaps
  it in; the publisher (and its subscribers' connections) stays;
- everything that can fail (the file, validation, loading the model, an nvdec preflight) happens
  before anything changes: a reload that fails is refused with one log line, counted, and the daemon
  keeps running the config it had;
- other sections (``[publish]``, ``[metrics]``, ...) are not re-applied: a change there is named in
  one line and takes effect at the next restart; ``daemon.log_level`` is applied.

The swap itself: the pipeline's workers finish the frames they hold (published), a new pipeline over
the new source list and detectors starts, continuing the message ``sequence``. Untouched sources
keep capturing into their latest-frame slots meanwhile; the swap takes milliseconds (a frame period
at 30 fps is 33 ms). While the detector is built and while the pipelines change hands, the slots
hold (``LatestFrameSlot.hold``, up to ``SWAP_HOLD_SECONDS`` each time): a frame waits for the one in
the slot to be taken instead of replacing it, so the swap costs an untouched source no frame.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from streamd.config.load import load_config
from streamd.config.schema import Config, ModelConfig, SourceConfig
from streamd.daemon.malloc import return_freed_memory
from streamd.daemon.pipeline import Pipeline
from streamd.errors import StreamdError
from streamd.inference.detector import Detector
from streamd.sources.capture import CaptureSource

log = logging.getLogger(__name__)

# A stopping source may need its read timeout to return (streamd.sources.capture.join_timeout).
SOURCE_STOP_SECONDS = 2.0
# While the pipeline is swapped, nobody takes frames: an untouched source's next frame waits in its slot
# for up to this long instead of replacing the one there (which would be lost). Past it, frames are
# superseded as usual (counted, and said in the reload's line).
SWAP_HOLD_SECONDS = 2.0
# After the new pipeline starts, the hold lasts this much longer at most: time for its workers to take.
SWAP_HOLD_GRACE_SECONDS = 0.2
PIPELINE_STOP_SECONDS = 5.0

# Sections a reload re-applies; the rest are named and left for a restart.
_RELOADED_FIELDS = ("sources", "model", "path")


@dataclass(frozen=True)
class ConfigDiff:
    added: tuple[SourceConfig, ...]
    removed: tuple[str, ...]
    changed: tuple[SourceConfig, ...]  # the new configs of sources whose settings differ
    unchanged: tuple[str, ...]
    model_changed: bool
    restart_only: tuple[str, ...]  # "publish.endpoint", ...: not applied by a reload
    # The new configs of sources whose zones or lines alone differ: applied without restarting them.
    analytics: tuple[SourceConfig, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.model_changed or self.analytics)

    @property
    def swaps_pipeline(self) -> bool:
        """Whether sources or the model change (zones and lines alone are taken up by the running pipeline)."""
        return bool(self.added or self.removed or self.changed or self.model_changed)

    def summary(self) -> str:
        parts = [f"{label} {', '.join(ids)}" for label, ids in (
            ("added", [s.id for s in self.added]), ("removed", list(self.removed)),
            ("restarted", [s.id for s in self.changed]), ("zones or lines updated", [s.id for s in self.analytics]))
            if ids]
        if self.model_changed:
            parts.append("model swapped")
        parts.append(f"{len(self.unchanged)} source(s) untouched")
        return "; ".join(parts)


def diff_configs(old: Config, new: Config) -> ConfigDiff:
    old_sources = {s.id: s for s in old.sources}
    new_sources = {s.id: s for s in new.sources}
    restart_only = []
    for f in dataclasses.fields(Config):
        if f.name in _RELOADED_FIELDS:
            continue
        old_section, new_section = getattr(old, f.name), getattr(new, f.name)
        if old_section == new_section:
            continue
        if dataclasses.is_dataclass(old_section):
            restart_only += [f"{f.name}.{key.name}" for key in dataclasses.fields(old_section)
                             if getattr(old_section, key.name) != getattr(new_section, key.name)]
        else:
            restart_only.append(f.name)
    kept = [s for s in new.sources if s.id in old_sources and old_sources[s.id] != s]
    return ConfigDiff(
        added=tuple(s for s in new.sources if s.id not in old_sources),
        removed=tuple(i for i in old_sources if i not in new_sources),
        changed=tuple(s for s in kept if _capture_part(old_sources[s.id]) != _capture_part(s)),
        unchanged=tuple(s.id for s in new.sources if old_sources.get(s.id) == s),
        model_changed=old.model != new.model,
        restart_only=tuple(key for key in restart_only if key != "daemon.log_level"),
        analytics=tuple(s for s in kept if _capture_part(old_sources[s.id]) == _capture_part(s)))


def _capture_part(source: SourceConfig) -> SourceConfig:
    """A source's settings but its zones and lines: what restarting it would change."""
    return dataclasses.replace(source, zones=(), lines=())


class ReloadTarget(Protocol):
    """What a reload reads and replaces of the running daemon (streamd.daemon.service.Service)."""

    config: Config
    sources: list[CaptureSource]
    detectors: list[Detector]
    pipeline: Pipeline | None

    def build_detectors(self, model: ModelConfig, config: Config) -> list[Detector]: ...

    def check_sources(self, config: Config) -> None: ...

    def build_source(self, source: SourceConfig, config: Config) -> CaptureSource: ...

    def build_pipeline(self, sources: Sequence[CaptureSource], detectors: Sequence[Detector], config: Config,
                       first_sequence: int = 0, restarted: Collection[str] = ()) -> Pipeline: ...

    def release_source(self, source: CaptureSource) -> None: ...

    def update_analytics(self, sources: Sequence[SourceConfig]) -> None: ...

    def count_reload(self, result: str) -> None: ...


class Reloader:
    """Re-reads ``service.config.path`` and applies it to the running ``service``. ``reload()`` is
    called from the daemon's main loop (never from the signal handler)."""

    def __init__(self, service: ReloadTarget, loader: Callable[[str], Config] = load_config) -> None:
        self._service = service
        self._loader = loader
        self.swap_superseded = 0  # frames of untouched sources replaced in their slots during the last swap

    def reload(self) -> bool:
        """True when applied (or nothing changed), False when refused."""
        service = self._service
        started = time.monotonic()
        path = service.config.path
        try:
            if not path or path.startswith("("):
                raise StreamdError(f"no config file to re-read (running {path or 'a config given in code'})")
            new = self._loader(path)
            diff = diff_configs(service.config, new)
            self._apply(new, diff)
        except Exception as error:  # ConfigError, a model that cannot load, ...: keep what runs
            log.error("reload refused, still running the previous config: %s", _one_line(error))
            service.count_reload("refused")
            return False
        if diff.restart_only:
            log.warning("reload: %s changed; these take effect at the next restart (a reload re-applies "
                        "[[sources]], [model] and daemon.log_level)", ", ".join(diff.restart_only))
        superseded = f"; {self.swap_superseded} frame(s) of untouched sources superseded during the swap" \
            if self.swap_superseded else ""
        log.info("reload applied in %.2f s: %s%s", time.monotonic() - started,
                 "nothing changed" if diff.empty else diff.summary(), superseded)
        service.count_reload("applied")
        return True


    def _apply(self, new: Config, diff: ConfigDiff) -> None:
        service = self._service
        old = service.config
        self.swap_superseded = 0
        # What the new config keeps of the old: the sections a reload does not re-apply.
        kept = {f.name: getattr(old, f.name) for f in dataclasses.fields(Config) if f.name not in _RELOADED_FIELDS}
        kept["daemon"] = dataclasses.replace(kept["daemon"], log_level=new.daemon.log_level)
        effective = dataclasses.replace(new, **kept)
        if old.daemon.log_level != new.daemon.log_level:  # (a --log-level given at start gives way to it)
            logging.getLogger().setLevel(new.daemon.log_level.upper())
        if diff.analytics:  # taken up by the running pipeline at each source's next frame
            service.update_analytics(diff.analytics)
        if not diff.swaps_pipeline:
            service.config = effective
            return
        # 1. Everything that can fail, while the old config keeps running. Building a detector competes
        # with the running pipeline for the CPU: frames wait in their slots meanwhile, not lost (the hold
        # lapses by itself if this fails).
        for source in service.sources:
            source.slot.hold(SWAP_HOLD_SECONDS)
        service.check_sources(dataclasses.replace(effective, sources=(*diff.added, *diff.changed)))
        detectors = service.build_detectors(effective.model, effective) if diff.model_changed else service.detectors
        starting: list[CaptureSource] = []
        try:
            for source_config in (*diff.added, *diff.changed):
                starting.append(service.build_source(source_config, effective))
        except BaseException:
            for source in service.sources:
                source.slot.release()
            for source in starting:
                service.release_source(source)
            if diff.model_changed:
                _close_all(detectors)
            raise
        # 2. The swap: leaving sources told to stop, the pipeline finishes what it holds, a new one
        # over the new sources and detectors starts; then the new sources.
        leaving_ids = set(diff.removed) | {s.id for s in diff.changed}
        leaving = [s for s in service.sources if s.source_id in leaving_ids]
        staying = [s for s in service.sources if s.source_id not in leaving_ids]
        for source in staying:  # their frames wait for the new pipeline rather than replace each other
            source.slot.hold(SWAP_HOLD_SECONDS)
        dropped_before = sum(s.slot.dropped for s in staying)
        for source in leaving:
            source.request_stop()
        old_pipeline = service.pipeline
        first_sequence = 0
        if old_pipeline is not None:
            old_pipeline.stop(PIPELINE_STOP_SECONDS)
            if old_pipeline.running:
                log.warning("reload: a pipeline worker was still busy %.0f s after stop; left to finish",
                            PIPELINE_STOP_SECONDS)
            first_sequence = old_pipeline.sequence
        by_id = {s.source_id: s for s in service.sources if s.source_id not in leaving_ids}
        by_id.update({s.source_id: s for s in starting})
        sources = [by_id[s.id] for s in effective.sources]
        old_detectors = service.detectors
        service.sources, service.detectors, service.config = sources, list(detectors), effective
        service.pipeline = service.build_pipeline(sources, detectors, effective, first_sequence,
                                                  restarted={s.id for s in diff.changed})
        service.pipeline.start()
        for source in staying:
            source.slot.release(SWAP_HOLD_GRACE_SECONDS)
        self.swap_superseded = sum(s.slot.dropped for s in staying) - dropped_before
        for source in starting:
            source.start()
        # 3. Release what left: threads joined against one deadline, then their buffers; the old detector.
        budget = max((s.join_timeout(SOURCE_STOP_SECONDS) for s in leaving), default=0.0)
        deadline = time.monotonic() + budget
        for source in leaving:
            if not source.join(deadline - time.monotonic()):
                log.warning("reload: source %s still running %.1f s after stop; abandoned", source.source_id, budget)
            service.release_source(source)
        if diff.model_changed:
            _close_all(old_detectors)
        return_freed_memory()


def _close_all(detectors: Sequence[Detector]) -> None:
    for detector in detectors:
        try:
            detector.close()
        except Exception:  # keep closing the others
            log.exception("closing %s failed", type(detector).__name__)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
