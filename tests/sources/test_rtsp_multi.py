"""Four RTSP cameras from one server at once, TCP and UDP mixed: all delivered at full rate."""

from __future__ import annotations

import time

from tests.sources.rtsp_support import RateSampler, wait_for

STREAM_FPS = 10  # vtest.avi's rate (and the generated clip's)
RUN_SECONDS = 5.0


def test_four_sources_from_one_server(rtsp_server, sources) -> None:
    mounts = ["cam0", "cam1", "cam2", "cam3"]
    server = rtsp_server(mounts=mounts)
    # Two transports make concurrent opens go through the FFmpeg options gate both ways.
    started = [sources.start(m, server.url(m), transport="tcp" if i % 2 == 0 else "udp") for i, m in enumerate(mounts)]
    assert wait_for(lambda: all(s.state == "streaming" for s in started), timeout=10), \
        {s.source_id: s.state for s in started}
    with RateSampler(started) as sampler:
        time.sleep(RUN_SECONDS)
    for index, source in enumerate(started):
        (first_time, first), (last_time, last) = sampler.samples[0], sampler.samples[-1]
        rate = (last[index] - first[index]) / (last_time - first_time)
        print(f"{source.source_id} ({source.config.transport}): {rate:.1f} fps")
        assert rate > 0.8 * STREAM_FPS, f"{source.source_id} delivered {rate:.1f} fps"
        assert source.state == "streaming"
        assert sources.sample("streamd_source_errors_total", source.source_id, kind="open") == 0
        assert sources.sample("streamd_frames_captured_total", source.source_id) == source.frames_delivered
