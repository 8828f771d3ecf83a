"""Zone membership of tracked objects: enter and exit, with inertia.

A detection is *in* a zone in a frame when its anchor is inside the polygon and its class is one the
zone counts (``Compiled.evaluate``): that is what the per-frame message says, of untracked boxes too. A
tracked object *enters* once it has been in the zone ``min_frames`` of its frames in a row, and
*leaves* once it has been out of it that many in a row; a box flickering across the edge does
neither. The enter time is the first of those frames, the exit time the first frame out, so the time
in the zone is within one frame interval of the truth either way.
"""

from __future__ import annotations

from collections.abc import Sequence

from streamd.analytics.tracks import TrackState, set_bits


def update(state: TrackState, observed: int, now: float, min_frames: Sequence[int]) -> list[tuple[int, float]]:
    """One frame of a track seen with ``observed`` zone bits at source time ``now``: the zones it entered
    (z, -1.0) and left (z, seconds in it). Updates ``state``."""
    differs = state.confirmed ^ observed
    runs = state.runs
    for z in [z for z in runs if not differs >> z & 1]:  # back as confirmed before min_frames: the run ends
        del runs[z]
    flips = []
    for z in set_bits(differs):
        run = runs.get(z)
        if run is None:
            run = runs[z] = [0, now]
        run[0] += 1
        if run[0] < min_frames[z]:
            continue
        del runs[z]
        state.confirmed ^= 1 << z
        if observed >> z & 1:
            state.since[z] = run[1]
            flips.append((z, -1.0))
        else:
            state.done &= ~(1 << z)
            flips.append((z, run[1] - state.since.pop(z, run[1])))
    return flips
