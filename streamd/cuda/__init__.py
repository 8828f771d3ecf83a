"""The only gateway to ``cuda.bindings`` (cuda-python).

Nothing here imports cuda-python at module import time: ``streamd.cuda.runtime.bindings()`` does it on
first use, so the CPU path never needs it installed.
"""
