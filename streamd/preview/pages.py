"""The preview's HTML and JSON: an index of every source and one page per source. No scripts: the
index refreshes itself every few seconds, with a thumbnail of each streaming source (its next annotated
snapshot, so a thumbnail is as fresh as the page); the live view is an <img> of the MJPEG stream."""

from __future__ import annotations

import time
from html import escape

from streamd.preview.hub import PreviewHub, SourceView

INDEX_REFRESH_SECONDS = 2
DETECTIONS_LISTED = 8
# A source whose last frame is older than this gets no thumbnail: its snapshot would wait for a frame
# (holding a viewer slot) and delay the page's next refresh.
THUMBNAIL_MAX_SECONDS_SINCE_FRAME = 5.0

_STYLE = """body{font-family:sans-serif;margin:1em;background:#fafafa}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eee}.streaming{color:#070}.stalled,.backing_off{color:#b00}img{max-width:100%}
img.thumb{width:320px;max-width:40vw;display:block}"""


def source_summary(hub: PreviewHub, view: SourceView, state: str, now_monotonic: float) -> dict:
    latest = view.latest
    summary: dict = {"source": view.source_id, "state": state, "fps": round(view.fps(now_monotonic), 2),
                     "viewers": view.viewers, "frame_index": None, "frame_age_seconds": None,
                     "seconds_since_frame": None, "detections": []}
    if latest is not None:
        summary.update(frame_index=latest.frame_index, frame_age_seconds=round(latest.frame_age_seconds, 4),
                       seconds_since_frame=round(max(0.0, time.time() - latest.capture_time), 3),
                       detections=[{"label": b.label, "score": round(b.score, 3), "track_id": b.track_id,
                                    "box": [round(v, 1) for v in (b.x1, b.y1, b.x2, b.y2)]}
                                   for b in hub.boxes(latest)])
    return summary


def summaries(hub: PreviewHub) -> list[dict]:
    now = time.monotonic()
    return [source_summary(hub, hub.view(source_id), state, now) for source_id, state in hub.states().items()]


def _detections_text(detections: list[dict]) -> str:
    if not detections:
        return "none"
    shown = [(f"#{d['track_id']} " if d["track_id"] is not None else "") + f"{d['label']} {d['score']:.2f}"
             for d in detections[:DETECTIONS_LISTED]]
    more = len(detections) - DETECTIONS_LISTED
    return escape(", ".join(shown) + (f" and {more} more" if more > 0 else ""))


def _thumbnail(summary: dict) -> str:
    """The index's picture cell: the source's next annotated snapshot, linked to its live view."""
    source = escape(summary["source"])
    since = summary["seconds_since_frame"]
    if since is None or since > THUMBNAIL_MAX_SECONDS_SINCE_FRAME:
        return "<td>no recent frame</td>"
    return (f'<td><a href="/sources/{source}"><img class="thumb" src="/sources/{source}/snapshot.jpg" '
            f'alt="latest annotated frame of {source}"></a></td>')


def _row(summary: dict, link: bool) -> str:
    source = escape(summary["source"])
    name = f'<a href="/sources/{source}">{source}</a>' if link else source
    age = "—" if summary["frame_age_seconds"] is None else f"{summary['frame_age_seconds'] * 1000:.0f} ms"
    state = escape(summary["state"])
    picture = _thumbnail(summary) if link else ""  # the index's rows; a source's page shows the live view
    return (f'<tr><td>{name}</td>{picture}<td class="{state}">{state}</td><td>{summary["fps"]:.1f}</td>'
            f'<td>{age}</td>'
            f'<td>{_detections_text(summary["detections"])}</td></tr>')


_HEADER = "<tr><th>source</th><th>state</th><th>fps</th><th>frame age</th><th>last detections</th></tr>"
_INDEX_HEADER = _HEADER.replace("<th>source</th>", "<th>source</th><th>picture</th>")


def index_page(hub: PreviewHub) -> str:
    return index_html(summaries(hub))


def index_html(source_summaries: list[dict]) -> str:
    """The index over these sources' summaries (one process's, or a supervisor's merged list)."""
    rows = "\n".join(_row(s, link=True) for s in source_summaries)
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>streamd preview</title>'
            f'<meta http-equiv="refresh" content="{INDEX_REFRESH_SECONDS}"><style>{_STYLE}</style></head><body>'
            f"<h1>streamd: {len(source_summaries)} source(s)</h1><table>{_INDEX_HEADER}\n{rows}</table>"
            f'<p>Open a source for its live annotated view. <a href="/sources.json">JSON</a></p></body></html>')


def source_page(hub: PreviewHub, source_id: str) -> str:
    summary = source_summary(hub, hub.view(source_id), hub.states().get(source_id, "unknown"), time.monotonic())
    source = escape(source_id)
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>streamd: {source}</title>'
            f"<style>{_STYLE}</style></head><body><p><a href=\"/\">all sources</a></p>"
            f"<table>{_HEADER}\n{_row(summary, link=False)}</table>"
            f'<p><img id="live" src="/sources/{source}/stream.mjpg" alt="live view of {source}"></p>'
            f"</body></html>")


def not_found_page(path: str, source_ids: list[str]) -> str:
    links = "".join(f'<li><a href="/sources/{escape(s)}">{escape(s)}</a></li>' for s in source_ids)
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>not found</title></head><body>'
            f"<p>No such page or source: {escape(path)}. Sources: {escape(', '.join(source_ids))}</p>"
            f"<ul>{links}</ul></body></html>")
