"""A source that cannot be opened is retried with backoff while the others keep running."""

from __future__ import annotations

import time
from pathlib import Path

from streamd.config import parse_config
from streamd.daemon.service import Service
from streamd.publish.subscriber import Subscriber


def test_unreadable_file_is_retried_while_the_image_source_publishes(tmp_path: Path, tiny_model: Path,
                                                                     tiny_image: Path) -> None:
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video at all" * 100)
    config = parse_config({
        "sources": [
            {"id": "broken", "kind": "file", "url": str(broken), "backoff_initial_seconds": 0.1,
             "backoff_max_seconds": 0.4},
            {"id": "still", "kind": "image", "url": str(tiny_image), "loop": True, "fps": 20},
        ],
        "model": {"path": str(tiny_model)},
        "publish": {"endpoint": "tcp://127.0.0.1:*"},
        "metrics": {"enabled": False},
    })
    service = Service(config)
    service.start_detector()
    try:
        with Subscriber(service.publisher_endpoint()) as subscriber:
            service.start_sources()
            messages = subscriber.collect(2.5)
        assert {m["source"] for m in messages} == {"still"}
        assert len(messages) >= 20  # 20 fps, undisturbed by the broken source's retries
        registry = service.registry
        open_errors = registry.get_sample_value("streamd_source_errors_total", {"source": "broken", "kind": "open"})
        assert open_errors >= 3  # retried, with delays of 0.05-0.4 s
        broken_source = next(s for s in service.sources if s.source_id == "broken")
        assert broken_source.alive and broken_source.state in ("connecting", "backing_off")
        assert registry.get_sample_value("streamd_source_up", {"source": "broken"}) == 0
        assert registry.get_sample_value("streamd_source_up", {"source": "still"}) == 1
        assert service.readiness()[0]  # one streaming source is enough to be ready
    finally:
        started = time.monotonic()
        service.stop()
        assert time.monotonic() - started < 5
