"""``streamd bench``: the raw backend and the full pipeline, side by side in one run."""
