"""What this machine's GStreamer offers, without the capture code: PyGObject imported and initialised once,
the elements present, whether this is a Jetson. ``streamd.sources.readers`` (``decoder = "auto"``) and
``streamd doctor`` ask here; ``streamd.sources.gstreamer`` builds its pipelines from it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from streamd.errors import SourceError

INSTALL_HINT = ("install PyGObject (pip install 'streamd[gstreamer]'; Debian/Ubuntu build it with "
                "libgirepository1.0-dev libcairo2-dev pkg-config) and GStreamer's plugins (gstreamer1.0-plugins-"
                "base/good/bad, gstreamer1.0-libav; on a Jetson they come with JetPack), or set decoder = \"opencv\"")
TEGRA_RELEASE = Path("/etc/nv_tegra_release")

# Element names by platform (streamd.sources.gstreamer's docstring shows the pipelines).
HARDWARE_ELEMENTS = {"decode": "nvv4l2decoder", "convert": "nvvidconv ! video/x-raw,format=BGRx ! videoconvert"}
SOFTWARE_ELEMENTS = {"decode": "avdec_h264", "convert": "videoconvert"}
# Every element a pipeline may need, for `streamd doctor` and the preflight.
ELEMENT_NAMES = ("rtspsrc", "rtph264depay", "h264parse", "filesrc", "parsebin", "appsink", "videoconvert",
                 "avdec_h264", "nvv4l2decoder", "nvvidconv")

_init_lock = threading.Lock()
_gst = None
REGISTRY_ENV = "GST_REGISTRY"


def registry_location(environ: dict[str, str]) -> str | None:
    """Where GStreamer should keep its plugin registry, or None to leave its default.

    GStreamer scans every plugin at init unless its registry cache (``~/.cache/gstreamer-1.0``) is
    writable; the systemd units' DynamicUser has no home, so every start would rescan. The units set
    STREAMD_CACHE_DIR (their CacheDirectory=): the registry goes there, unless GST_REGISTRY is set.
    """
    if environ.get(REGISTRY_ENV) or not environ.get("STREAMD_CACHE_DIR"):
        return None
    return str(Path(environ["STREAMD_CACHE_DIR"]) / "gstreamer-registry.bin")


def import_gst():
    """(Gst, GstApp), initialised once; SourceError with what to install when PyGObject or GStreamer is missing."""
    global _gst
    with _init_lock:
        if _gst is None:
            try:
                import gi  # noqa: PLC0415 - optional dependency

                gi.require_version("Gst", "1.0")
                gi.require_version("GstApp", "1.0")
                from gi.repository import Gst, GstApp  # noqa: PLC0415
            except (ImportError, ValueError) as error:
                raise SourceError(f"decoder 'jetson' needs GStreamer through PyGObject, which does not import "
                                  f"({error}); {INSTALL_HINT}") from error
            registry = registry_location(dict(os.environ))
            if registry is not None:
                os.environ[REGISTRY_ENV] = registry
            Gst.init(None)
            _gst = (Gst, GstApp)
    return _gst


def is_tegra() -> bool:
    """True on a Jetson (L4T writes /etc/nv_tegra_release)."""
    return TEGRA_RELEASE.exists()


def available_elements() -> dict[str, bool]:
    """Which of ELEMENT_NAMES this machine's GStreamer has (empty when GStreamer does not import)."""
    try:
        gst, _ = import_gst()
    except SourceError:
        return {}
    return {name: gst.ElementFactory.find(name) is not None for name in ELEMENT_NAMES}


def hardware_decode_available() -> bool:
    elements = available_elements()
    return bool(elements.get("nvv4l2decoder") and elements.get("nvvidconv"))


def auto_decoder() -> str:
    """``decoder = "auto"``: ``jetson`` on a Jetson whose GStreamer has the hardware elements, else ``opencv``."""
    if is_tegra() and hardware_decode_available():
        return "jetson"
    return "opencv"
