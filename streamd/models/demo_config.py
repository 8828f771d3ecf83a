"""The configuration ``streamd run`` uses when given none: the synthetic source and the built-in
model, so a fresh install shows real detections with no camera and no model file.

``configs/demo.toml`` holds the same text (a test keeps the two equal).
"""

from __future__ import annotations

import sys
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

DEMO_CONFIG_TOML = """\
# The out-of-the-box demo: a synthetic scene (coloured shapes over a textured background) and the
# detector shipped inside the package, on the CPU. `streamd run` with no --config runs the same
# thing (streamd/models/demo_config.py); `streamd subscribe` in a second terminal prints detections.
# Seed 0 is a held-out scene: the model never saw it in training (docs/synthetic.md).

[[sources]]
id = "demo"
kind = "synthetic"
width = 640
height = 480
fps = 10.0
seed = 0
max_frames = 0                        # 0: endless

[model]
path = "builtin:synthetic-shapes"     # classes come with it: circle, square, triangle, cross
score_threshold = 0.4
nms_threshold = 0.45
backend = "onnxruntime"

[publish]
endpoint = "tcp://127.0.0.1:5555"

[metrics]
bind = "127.0.0.1:9400"

[preview]                             # live annotated view: open http://127.0.0.1:9401/
enabled = true
bind = "127.0.0.1:9401"
"""


def demo_config_document() -> dict[str, Any]:
    """The demo config as a parsed TOML document, for ``streamd.config.load.parse_config``."""
    return tomllib.loads(DEMO_CONFIG_TOML)


def demo_source_table() -> dict[str, object]:
    """The built-in demo's synthetic source table, less its id and length (what ``streamd bench`` plays)."""
    source = dict(demo_config_document()["sources"][0])
    for key in ("id", "max_frames"):
        source.pop(key, None)
    return source
