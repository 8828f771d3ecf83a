"""The preview hub: nothing copied or encoded without a viewer; with one, frames rate-limited,
downscaled and annotated (track ids too) on the encoder thread; pooled buffers copied before release."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from streamd.preview.draw import class_colour
from streamd.preview.hub import PreviewHub, TooManyViewersError
from tests.preview.support import result


@pytest.fixture
def hub() -> PreviewHub:
    hub = PreviewHub(lambda: {"cam": "streaming", "door": "streaming"}, lambda: ("person", "car"), fps=50.0,
                     max_width=320, jpeg_quality=90, max_viewers=2)
    hub.start()
    yield hub
    hub.close()


def _picture() -> np.ndarray:
    return np.full((480, 640, 3), 60, np.uint8)


def test_without_a_viewer_only_the_latest_result_is_kept(hub: PreviewHub, monkeypatch: pytest.MonkeyPatch) -> None:
    grabbed = []
    monkeypatch.setattr(hub, "_grab", lambda frame: grabbed.append(frame) or frame.image)
    for index in range(50):
        hub.observe(result("cam", _picture(), [(10, 10, 100, 100)], index=index), 0.02)
    view = hub.views["cam"]
    assert grabbed == [] and view.frames_encoded == 0 and view.jpeg is None
    assert view.latest is not None and view.latest.frame_index == 49
    assert [b.label for b in hub.boxes(view.latest)] == ["person"]
    hub.observe(result("added", _picture()), 0.02)  # a source a reload added: its view is made
    assert hub.views["added"].latest is not None


def test_a_viewer_gets_annotated_downscaled_jpegs_at_most_at_the_preview_rate(hub: PreviewHub) -> None:
    with hub.watch("cam") as view:
        started = time.monotonic()
        deadline = started + 1.0
        index = 0
        while time.monotonic() < deadline:  # 1 s of frames at ~200 fps
            hub.observe(result("cam", _picture(), [(100, 100, 400, 300)], class_ids=[1], index=index), 0.01)
            index += 1
            time.sleep(0.005)
        got = view.wait_newer(0, 5.0)
    assert got is not None
    # fps = 50: at most 50 in the second (+1 for the first), and far fewer than the frames observed.
    assert 1 <= view.frames_encoded <= 52 < index
    picture = cv2.imdecode(np.frombuffer(got[1], np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (240, 320, 3)  # max_width 320, aspect kept
    # The box (100..400 x 100..300 at 640x480) is drawn at half scale in class 1's colour.
    edge = picture[100:150, 50]  # its left edge, x = 50
    colour = np.array(class_colour(1))
    assert (np.abs(edge.astype(int) - colour).max(axis=1) < 60).mean() > 0.8
    assert hub.viewer_count() == 0


def test_track_ids_are_drawn_and_listed(hub: PreviewHub) -> None:
    with hub.watch("door") as view:
        hub.observe(result("door", _picture(), [(10, 40, 200, 200), (300, 40, 500, 200)], track_ids=[7, 12]), 0.01)
        assert view.wait_newer(0, 5.0) is not None
    boxes = hub.boxes(view.latest)
    assert [b.track_id for b in boxes] == [7, 12]
    assert boxes[0].caption().startswith("#7 person")


def test_a_pooled_buffer_is_copied_before_the_frame_is_released(hub: PreviewHub) -> None:
    pooled = _picture()
    with hub.watch("cam") as view:
        hub.observe(result("cam", pooled, [], release_image=lambda: None), 0.01)
        pooled[:] = 255  # the pool hands the buffer out again
        got = view.wait_newer(0, 5.0)
    picture = cv2.imdecode(np.frombuffer(got[1], np.uint8), cv2.IMREAD_COLOR)
    assert abs(float(picture.mean()) - 60) < 5


def test_the_frame_itself_is_never_drawn_on(hub: PreviewHub) -> None:
    image = _picture()
    with hub.watch("cam") as view:
        hub.observe(result("cam", image, [(10, 10, 300, 300)]), 0.01)
        assert view.wait_newer(0, 5.0) is not None
    assert (image == 60).all()


def test_viewers_are_limited_and_counted(hub: PreviewHub) -> None:
    with hub.watch("cam"), hub.watch("door"):
        assert hub.viewer_count() == 2
        with pytest.raises(TooManyViewersError), hub.watch("cam"):
            pass
    assert hub.viewer_count() == 0
    with pytest.raises(KeyError), hub.watch("nope"):
        pass


def test_observe_never_waits_for_a_slow_encoder(hub: PreviewHub, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    monkeypatch.setattr(hub, "encode", lambda item: release.wait(10) and b"jpeg")
    with hub.watch("cam"):
        started = time.perf_counter()
        for index in range(200):
            hub.observe(result("cam", _picture(), [], index=index), 0.01)
        elapsed = time.perf_counter() - started
        release.set()
    # 200 calls while the encoder is stuck: each replaces the pending picture, none waits.
    assert elapsed < 2.0, elapsed


def test_the_sources_and_class_names_follow_a_reload() -> None:
    sources = {"cam": "streaming"}
    names = ["person"]
    hub = PreviewHub(lambda: sources, lambda: names, fps=5.0, max_width=320, jpeg_quality=70, max_viewers=2)
    hub.observe(result("cam", _picture(), [(1, 1, 9, 9)]), 0.01)
    assert [b.label for b in hub.boxes(hub.views["cam"].latest)] == ["person"]
    sources.pop("cam")
    sources["yard"] = "connecting"
    names[0] = "vehicle"
    assert list(hub.states()) == ["yard"]
    assert [b.label for b in hub.boxes(hub.views["cam"].latest)] == ["vehicle"]
    with pytest.raises(KeyError), hub.watch("cam"):
        pass
    with hub.watch("yard"):
        assert hub.viewer_count() == 1


def test_a_frame_it_cannot_read_is_skipped_and_said_once(hub: PreviewHub, caplog: pytest.LogCaptureFixture) -> None:
    strange = result("cam", _picture())
    strange.frame.image = object()
    with hub.watch("cam"), caplog.at_level("ERROR"):
        for _ in range(3):
            hub.views["cam"].next_due_monotonic = 0.0
            hub.observe(strange, 0.01)
    assert sum("cannot copy a frame of source cam" in r.message for r in caplog.records) == 1
    assert hub.views["cam"].frames_encoded == 0
