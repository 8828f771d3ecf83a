#!/usr/bin/env python3
"""INT8 / FP16 / FP32 models and engines for streamd: see docs/quantize.md and ``--help``.

A thin wrapper: everything lives in :mod:`streamd.quantize` (also reachable as ``streamd quantize``).
"""

import sys
from pathlib import Path

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamd.quantize.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
