"""The id figures for real footage (streamd.evaluation.id_coverage) and the line-count scoring against
synthetic truth (streamd.evaluation.count_accuracy), on hand-made messages."""

from __future__ import annotations

from streamd.evaluation.count_accuracy import score_counts, true_crossings
from streamd.evaluation.id_coverage import id_coverage


def detection(x: float, track_id: int | None, score: float = 0.9, class_id: int = 0) -> dict:
    return {"box": [x, 100.0, x + 40.0, 180.0], "score": score, "class_id": class_id, "track_id": track_id}


def message(index: int, detections: list[dict], source: str = "cam") -> dict:
    return {"source": source, "frame_index": index, "detections": detections}


def test_a_new_objects_first_frames_are_not_counted_and_a_withheld_stretch_is() -> None:
    # Object A (id 1) in frames 0-9, its id withheld in frames 5 and 6; object B appears at frame 3 (no id
    # in its first two frames, then id 2); a low-score box without an id is not counted.
    messages = []
    for index in range(10):
        found = [detection(100 + 2 * index, None if index in (5, 6) else 1), detection(500, None, score=0.4)]
        if index >= 3:
            found.append(detection(300 + 2 * index, None if index < 5 else 2))
        messages.append(message(index, found))
    figures = id_coverage(messages[::-1])  # order does not matter: per source, by frame index
    # A: frames 3-9 counted (7, 2 without id); B: frames 6-9 (its 4th on), all with an id.
    assert figures["sure_detections_counted"] == 11 and figures["sure_detections_with_id"] == 9
    assert figures["continuity"] == 1.0 and figures["chain_id_changes"] == 0 and figures["track_ids"] == 2


def test_ids_that_change_on_an_object_lower_the_continuity() -> None:
    # Two objects side by side; at frame 4 their ids swap, and after a withheld frame object A comes back
    # under a new id: one link of each pair of ids differs, and the chain changes are counted.
    messages = []
    for index in range(8):
        first, second = (1, 2) if index < 4 else (2, 1)
        first = None if index == 6 else (3 if index == 7 else first)
        messages.append(message(index, [detection(100 + index, first), detection(300 + index, second)]))
    figures = id_coverage(messages)
    # Links with ids on both ends: 7 for B, 5 for A (frames 6 and 7 of A lack one end); different: the
    # swap (2) and nothing across frame 6, which has no id.
    assert figures["links_with_ids"] == 12 and figures["links_same_id"] == 10
    assert figures["chain_id_changes"] == 3  # A: 1->2, 2->(withheld)->3; B: 2->1


def test_boxes_of_another_class_are_other_objects() -> None:
    messages = [message(index, [detection(100, 1, class_id=index % 2)]) for index in range(6)]
    figures = id_coverage(messages)
    assert figures["sure_detections_counted"] == 0 and figures["links_with_ids"] == 0


def test_counts_are_scored_per_scene_line_and_direction_against_the_truth() -> None:
    lines = {"across": ((0.0, 240.0), (640.0, 240.0))}
    truth = true_crossings(3, 100, *lines["across"])
    assert sum(truth.values()) >= 1
    events = [{"type": "line_cross", "line": "across", "direction": direction}
              for direction, count in truth.items() for _ in range(count)]
    exact = score_counts([{"source": "seed-3", "events": events}], [3], 100, lines, switches={3: 0})
    assert exact["absolute_error"] == 0 and exact["scenes_exact"] == exact["scenes_without_switch_exact"] == 1
    one_more = events + [{"type": "line_cross", "line": "across", "direction": "in"}]
    scored = score_counts([{"source": "seed-3", "events": one_more}], [3], 100, lines, switches={3: 1})
    assert scored["absolute_error"] == 1 and scored["scenes_exact"] == 0 and scored["scenes_without_switch"] == 0
    assert scored["per_scene"][0]["errors"] == {"across/in": 1, "across/out": 0}
