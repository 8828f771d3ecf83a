"""Product text says what the software does and why, never how it was developed: no dates or times of
day, no diary wording, no issue numbers and no words about the development setup. Measurements live as
JSON in benchmarks/results/ (dates are fine there) and pages link to them; an experiment's story belongs
in its commit message. One test per top-level area, so each can be checked alone
(``pytest tests/test_product_text.py -k 'test_no_diary[streamd]'``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve()

_MONTHS = ("January|February|March|April|May|June|July|August|September|October|November|December"
           "|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec")
_ORDINAL = (r"\d+(?:st|nd|rd|th)|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh"
            r"|twelfth")

# Words about how the project is developed: they apply to every scanned file, JSON results included.
DEVELOPMENT = [
    ("development machine", re.compile(r"\b(?:dev|development) VM\b", re.IGNORECASE)),
    ("development roles", re.compile(r"\b(?:the lead|the brief|other engineers|this session)\b", re.IGNORECASE)),
    ("development paths", re.compile(r"\.devdata\b|/work/|\bbash_jobs\b")),
    ("device lending", re.compile(r"\bdevice tool\b|\blending\b", re.IGNORECASE)),
]

# Dates, times of day, diary wording and issue numbers: they apply to text, not to result JSON.
DIARY = [
    # Anywhere, a file name included: result files are named MACHINE_WHAT.json, without a date.
    ("date", re.compile(r"(?<!\d)20\d\d-[01]\d-[0-3]\d(?!\d)"
                        rf"|\b(?:{_MONTHS})\.? (?:[0-3]?\d(?:st|nd|rd|th)?,? )?20\d\d\b"
                        rf"|\b[0-3]?\d(?:st|nd|rd|th)? (?:{_MONTHS})\.?,? 20\d\d\b")),
    # HH:MM (and the word UTC), but not an address's port (127.0.0.1:9400), a longer number, a HH:MM:SS
    # duration or a slice (a[10:20], 20:20 + n).
    ("time of day", re.compile(r"(?<![\d.:\[])\b(?:[01]\d|2[0-3]):[0-5]\d\b(?!:\d|\s*[-+*/\]])|\bUTC\b")),
    # Past-tense "tried" ("is tried before", "tried again" describe what the code does; ``tried = []``
    # is a name), "not kept", iterations of work ("pass 3", "the ninth pass"; "a second pass" over data
    # is an algorithm's), "yesterday", "today's".
    ("diary wording", re.compile(r"(?<!\bis )(?<!\bare )(?<![\w.])\btried\b(?! again|\s*=[^=]|\.\w|\[|(?<=\(tried)\))"
                                 r"|\bnot kept\b|\byesterday\b|\btoday's\b|\bpass \d+\b"
                                 rf"|(?<!\ba )\b(?:{_ORDINAL}) pass\b", re.IGNORECASE)),
    # "issue 13", "issues 4 and 5", and "#13" where it names an issue ("(#13)", "see #13", "fixed in #13"), not
    # a frame number ("demo #43 (25 ms)"), a colour (#070) or an upstream owner/repo#13.
    ("issue reference", re.compile(r"\bissues? #?\d+\b|(?:\(|\b(?:issues?|see|fix|fixe[sd]|close[sd]|in|of|for|from|by"
                                   r"|after|since|per|and|PRs?)\s+)#\d+\b", re.IGNORECASE)),
]


def _files(*patterns: str, exclude: tuple[str, ...] = ()) -> list[Path]:
    found = {path for pattern in patterns for path in REPO.glob(pattern) if path.is_file()}
    return sorted(path for path in found
                  if path.resolve() != THIS and path.relative_to(REPO).as_posix() not in exclude
                  and "__pycache__" not in path.parts)


# Top-level area -> its files.
AREAS = {
    "README.md": lambda: _files("README.md"),
    "docs": lambda: _files("docs/**/*.md"),
    "mkdocs.yml": lambda: _files("mkdocs.yml"),
    "streamd": lambda: _files("streamd/**/*.py"),
    "tests": lambda: _files("tests/**/*.py"),
    "tools": lambda: _files("tools/*"),
    "benchmarks": lambda: _files("benchmarks/*.py", "benchmarks/*.sh", "benchmarks/results/*.json"),
    "configs": lambda: _files("configs/*"),
    "systemd": lambda: _files("systemd/*"),
    "ops": lambda: _files("ops/**/*"),
}


def findings(path: Path) -> list[str]:
    """``path:line: text`` for every line of the file that one of the patterns matches."""
    data = path.read_bytes()
    if b"\0" in data:
        return []
    rules = DEVELOPMENT if path.suffix == ".json" and "results" in path.parts else DEVELOPMENT + DIARY
    found = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        kinds = sorted({kind for kind, pattern in rules if pattern.search(line)})
        if kinds:
            found.append(f"{path.relative_to(REPO)}:{number}: [{', '.join(kinds)}] {line.strip()[:200]}")
    return found


@pytest.mark.parametrize("area", list(AREAS))
def test_no_diary(area: str) -> None:
    found = [finding for path in AREAS[area]() for finding in findings(path)]
    if found:
        pytest.fail(f"{len(found)} lines of development history in product text:\n" + "\n".join(found),
                    pytrace=False)


@pytest.mark.parametrize(("line", "flagged"), [
    ("measured on 2026-11-30", True), ("benchmarks/results/2026-11-30_h200_scale.json", True),
    ("benchmarks/results/h200_scale.json", False), ("build_2026-11-30.log", True),
    ("on Nov 30, 2026", True), ("30 November 2026", True), ("May 2026", True),
    ("at 14:05 UTC", True), ("at 09:30", True), ("from 23:40-00:02", True), ("bind 127.0.0.1:9400", False),
    ("tcp://10.0.0.12:5555", False), ("ffmpeg -ss 00:00:10", False), ("aspect 16:9", False), ("a[10:20]", False),
    ("image[y0:y1, 20:20 + w]", False), ("timezone.utc", False),
    ("we tried it", True), ("Tried and not kept: x", True), ("PyAV (tried, slower)", True),
    ("this is tried before new tracks", False), ("tried again at the next interval", False), ("tried = []", False),
    ("raise Error('; '.join(tried))", False), ("pass 3 of the tracker", True), ("the 2nd pass", True),
    ("Ninth pass: the same tracker", True), ("the eighth pass's output", True), ("a second pass over the boxes", False),
    ("passes the test", False), ("see issue 13", True), ("Issue 11's acceptance", True), ("fixed in #13", True),
    ("(#13)", True), ("color:#070", False), ("color: #333", False), ("demo #43 (25 ms)", False),
    ("microsoft/onnxruntime#12345", False), ("on the 2-core dev VM", True), ("the lead asked", True),
    ("an ONNX Runtime session", False), ("this session's VM", True), ("/work/shared/models", True),
    (".devdata/vtest.avi", True), ("leading zeros", False), ("the lending tool", True),
])
def test_patterns(line: str, flagged: bool) -> None:
    assert any(pattern.search(line) for _, pattern in DEVELOPMENT + DIARY) == flagged
