"""Models shipped inside the package, addressed in configs as ``model.path = "builtin:NAME"``.

The files live in ``streamd/models/data/`` (package data): ``NAME_WITH_UNDERSCORES.onnx`` plus a
``.names`` file of class names, one a line. ``synthetic-shapes`` is trained by
``tools/train_synthetic.py`` on the synthetic source (``kind = "synthetic"``); see docs/synthetic.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streamd.errors import ConfigError
from streamd.models.demo_config import DEMO_CONFIG_TOML, demo_config_document

__all__ = ["BUILTIN_MODELS", "DEMO_CONFIG_TOML", "BuiltinModel", "builtin_model", "demo_config_document"]

DATA_DIR = Path(__file__).resolve().parent / "data"

# builtin name -> file stem in DATA_DIR
BUILTIN_MODELS: dict[str, str] = {
    "synthetic-shapes": "synthetic_shapes",
}


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    onnx_path: Path
    classes: tuple[str, ...]


def builtin_model(name: str) -> BuiltinModel:
    """The shipped model ``name``; raises ConfigError("model.path", ...) if unknown or missing."""
    stem = BUILTIN_MODELS.get(name)
    if stem is None:
        raise ConfigError("model.path", f"unknown built-in model 'builtin:{name}'; available: "
                                        + ", ".join(f"'builtin:{n}'" for n in sorted(BUILTIN_MODELS)))
    onnx_path = DATA_DIR / f"{stem}.onnx"
    names_path = DATA_DIR / f"{stem}.names"
    if not onnx_path.is_file() or not names_path.is_file():
        raise ConfigError("model.path", f"built-in model '{name}' is not installed ({onnx_path} or {names_path} "
                                        "missing): reinstall streamd, or retrain with tools/train_synthetic.py")
    classes = tuple(line.strip() for line in names_path.read_text().splitlines() if line.strip())
    return BuiltinModel(name, onnx_path, classes)
