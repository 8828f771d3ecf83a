"""The disk-backed buffer's files (streamd.sinks.journal): records come back from the cursor on, in order,
across a reopen; a record cut short is skipped with what follows it; settled segments are deleted."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamd.sinks import journal as journal_module
from streamd.sinks.journal import Journal, JournalError


def records(first: int, count: int) -> list[tuple[int, int, str, bytes]]:
    return [(n, n % 2, f"cam{n % 3}", f'{{"n":{n}}}'.encode() * (n % 5)) for n in range(first, first + count)]


def test_records_come_back_from_the_cursor(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    assert journal.recover() == [] and journal.next_number == 0
    journal.append(records(0, 100))
    journal.settle(40)
    journal.close()
    again = Journal(tmp_path / "j")
    assert again.identity == journal.identity
    assert again.recover() == records(40, 60) and again.next_number == 100
    again.append(records(100, 5))
    again.settle(102)
    again.close()
    assert Journal(tmp_path / "j").recover() == records(102, 3)


def test_a_record_cut_short_ends_the_reading(tmp_path: Path, caplog) -> None:
    journal = Journal(tmp_path)
    journal.append(records(0, 10))
    journal.close()
    segment = next(tmp_path.glob("*.seg"))
    segment.write_bytes(segment.read_bytes()[:-3])  # a power loss in the middle of the last write
    assert Journal(tmp_path).recover() == records(0, 9)
    assert "cut short" in caplog.text


def test_settled_segments_are_deleted(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(journal_module, "SEGMENT_RECORDS", 10)
    journal = Journal(tmp_path)
    journal.recover()
    journal.append(records(0, 35))
    assert len(list(tmp_path.glob("*.seg"))) == 4
    journal.settle(25)
    journal.flush()
    assert sorted(p.name for p in tmp_path.glob("*.seg")) == ["0000000000000020.seg", "0000000000000030.seg"]
    journal.close()
    assert Journal(tmp_path).recover() == records(25, 10)


def test_one_process_at_a_time(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    with pytest.raises(JournalError, match="in use by another process"):
        Journal(tmp_path, lock_wait_seconds=0.2)
    journal.close()
    Journal(tmp_path, lock_wait_seconds=0.2).close()
