"""The preview in a real browser: `streamd run` on the built-in demo with the preview on;
headless Chromium opens the index (the source is listed, with a thumbnail) and the source's page, and their
screenshots show boxes drawn in the detector's class colours (pixels of the PNG, not an HTTP status).

With STREAMD_DOCS_IMAGES=DIR the screenshots are kept as DIR/preview_demo.png and DIR/preview_index.png
(the pictures in docs/operating.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamd.models.demo_config import DEMO_CONFIG_TOML
from streamd.preview.draw import PALETTE
from tests.support import free_port, skip_unless_required, wait_for_http

TOLERANCE = 40  # per channel: JPEG quality 70 and Chromium's scaling move a drawn colour this far at most
LINE_RUN_PIXELS = 25  # a box edge: at least this many pixels of one palette colour in a row...
LINE_CLEARANCE_PIXELS = 6  # ...with that colour absent this far above and below (a line, not a filled area)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "chromium-headless-shell"):
        path = shutil.which(name)
        if path:
            return path
    skip_unless_required("chromium", "needs headless Chromium (Debian package chromium)")
    raise AssertionError("unreachable")


def screenshot(browser: str, url: str, path: Path, profile: Path, size: str = "800,640") -> np.ndarray:
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                             f"--user-data-dir={profile}", f"--window-size={size}", "--timeout=5000",
                             f"--screenshot={path}", url], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and path.is_file(), result.stderr[-2000:]
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} is not a PNG"
    return image


def box_edges(image: np.ndarray, colour: tuple[int, int, int]) -> int:
    """Rows holding a thin horizontal line of ``colour``: runs of LINE_RUN_PIXELS matching pixels whose
    pixels LINE_CLEARANCE_PIXELS above and below mostly do not match (filled shapes and label
    backgrounds are thicker than that)."""
    match = (np.abs(image.astype(np.int16) - np.array(colour, np.int16)).max(axis=2) <= TOLERANCE)
    height = match.shape[0]
    edges = 0
    for y in range(LINE_CLEARANCE_PIXELS, height - LINE_CLEARANCE_PIXELS):
        row = match[y]
        if row.sum() < LINE_RUN_PIXELS:
            continue
        columns = np.flatnonzero(row)
        runs = np.split(columns, np.flatnonzero(np.diff(columns) != 1) + 1)
        for run in runs:
            if len(run) < LINE_RUN_PIXELS:
                continue
            above = match[y - LINE_CLEARANCE_PIXELS, run].mean()
            below = match[y + LINE_CLEARANCE_PIXELS, run].mean()
            if above < 0.3 and below < 0.3:
                edges += 1
                break
    return edges


@pytest.fixture
def demo_preview(daemon_factory) -> str:  # noqa: ANN001
    """The built-in demo (`streamd run` with no config) on free ports, preview on: its base URL."""
    preview_port = free_port()
    text = (DEMO_CONFIG_TOML.replace('"tcp://127.0.0.1:5555"', f'"tcp://127.0.0.1:{free_port()}"')
            .replace('"127.0.0.1:9400"', f'"127.0.0.1:{free_port()}"')
            .replace('"127.0.0.1:9401"', f'"127.0.0.1:{preview_port}"'))
    if "[preview]" not in text:
        text += f'\n[preview]\nenabled = true\nbind = "127.0.0.1:{preview_port}"\n'
    assert "5555" not in text and "9400" not in text and f":{preview_port}" in text
    daemon = daemon_factory(text)
    base = f"http://127.0.0.1:{preview_port}"
    wait_for_http(f"{base}/", 90)
    # The next annotated JPEG (a snapshot counts as a viewer while it waits): the pipeline runs.
    with urllib.request.urlopen(f"{base}/sources/demo/snapshot.jpg", timeout=60) as response:
        assert response.read(2) == b"\xff\xd8"
    assert daemon.process.poll() is None, daemon.log()
    return base


@pytest.fixture
def browser() -> str:
    return chromium()


def test_preview_in_headless_chromium_shows_drawn_boxes(browser: str, demo_preview: str, tmp_path: Path) -> None:
    index = screenshot(browser, f"{demo_preview}/", tmp_path / "index.png", tmp_path / "profile-index", "900,400")
    page = screenshot(browser, f"{demo_preview}/sources/demo", tmp_path / "demo.png", tmp_path / "profile-demo")
    assert index.std() > 5  # the table rendered, not a blank page
    # The index shows the source's thumbnail: its annotated picture, boxes drawn.
    index_edges = {colour: box_edges(index, colour) for colour in PALETTE[:4]}
    assert sum(index_edges.values()) >= 1, f"no drawn box edges in the index's thumbnail: {index_edges}"
    # The demo's model finds circles, squares, triangles and crosses (classes 0-3): boxes in their colours.
    edges = {colour: box_edges(page, colour) for colour in PALETTE[:4]}
    assert sum(edges.values()) >= 2, f"no drawn box edges found in the screenshot: {edges}"
    images = os.environ.get("STREAMD_DOCS_IMAGES")
    if images:
        Path(images).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "demo.png", Path(images) / "preview_demo.png")
        shutil.copy(tmp_path / "index.png", Path(images) / "preview_index.png")


def test_the_box_detector_is_not_fooled_by_the_scene(tmp_path: Path) -> None:
    """The check above needs drawn lines: a filled square of a palette colour is not one."""
    image = np.full((200, 300, 3), 120, np.uint8)
    cv2.rectangle(image, (20, 20), (120, 120), PALETTE[1], cv2.FILLED)
    assert box_edges(image, PALETTE[1]) == 0
    cv2.rectangle(image, (150, 30), (280, 170), PALETTE[0], 2)
    assert box_edges(image, PALETTE[0]) >= 2
