"""The schema is the single source of truth: docs/configuration.md's reference is its rendering, and
configs/example.toml writes only keys the schema has, with values it allows, for the kinds they fit."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest

from streamd.config.load import parse_config
from streamd.config.reference import BEGIN, END, main, render, replace_block, user_fields
from streamd.config.schema import SECTIONS, SOURCE_TABLES, allowed_values
from streamd.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]


PAGE = REPO / "docs" / "configuration.md"
MAX_PAGE_LINES = 400


def test_the_docs_reference_is_the_rendered_schema() -> None:
    page = PAGE.read_text()
    start, end = page.index(BEGIN), page.index(END) + len(END)
    assert page[start:end] == render(), ("docs/configuration.md's reference differs from the schema: run "
                                         "`python -m streamd.config.reference --write docs/configuration.md`")
    assert len(page.splitlines()) <= MAX_PAGE_LINES, "docs/configuration.md is too long to read as one page"


def test_write_updates_only_the_block(tmp_path: Path) -> None:
    page = tmp_path / "configuration.md"
    page.write_text(f"# Intro\n\ntext\n\n{BEGIN}\nstale\n{END}\n\nafter\n")
    assert main(["--check", str(page)]) == 1
    assert main(["--write", str(page)]) == 0
    assert page.read_text() == f"# Intro\n\ntext\n\n{render()}\n\nafter\n"
    assert main(["--check", str(page)]) == 0
    with pytest.raises(ValueError, match="has no"):
        replace_block("# no markers\n", render())


def test_every_key_is_described() -> None:
    for section, cls in SECTIONS.items():
        for key, f in user_fields(cls):
            assert f.metadata.get("doc"), f"{section}.{key} has no description in the schema"


def test_example_toml_keys_values_and_kinds_match_the_schema() -> None:
    text = (REPO / "configs" / "example.toml").read_text()
    document = tomllib.loads(text)
    assert set(document) <= set(SECTIONS)
    tables = [("sources", t) for t in document["sources"]]
    tables += [(section, document[section]) for section in SECTIONS if section != "sources" and section in document]
    for section, table in tables:
        fields = dict(user_fields(SECTIONS[section]))
        for key, value in table.items():
            assert key in fields, f"example.toml [{section}] {key}: not in the schema"
            metadata = fields[key].metadata
            allowed = allowed_values(metadata)
            assert not allowed or value in allowed, f"example.toml {section}.{key} = {value!r}: not one of {allowed}"
            kinds = metadata.get("kinds", ())
            assert section != "sources" or not kinds or table["kind"] in kinds, f"{key} on a {table['kind']} source"
    # [[sources.zones]] and [[sources.lines]] tables: their keys and values too.
    for source in document["sources"]:
        for name, cls in SOURCE_TABLES.items():
            fields = dict(user_fields(cls))
            for table in source.get(name, []):
                for key, value in table.items():
                    assert key in fields, f"example.toml [[sources.{name}]] {key}: not in the schema"
                    allowed = allowed_values(fields[key].metadata)
                    assert not allowed or value in allowed, f"example.toml sources.{name}.{key} = {value!r}"
    # Every key of the schema appears, set or commented out, so the example is a complete template.
    written = set(re.findall(r"^#?\s*([a-z_]+)\s*=", text, re.MULTILINE))
    written |= set(re.findall(r"^#?\s*\[\[sources\.([a-z_]+)\]\]", text, re.MULTILINE))  # zones, lines
    for section, cls in {**SECTIONS, **{f"sources.{name}": cls for name, cls in SOURCE_TABLES.items()}}.items():
        for key, _ in user_fields(cls):
            assert key in written, f"configs/example.toml does not mention {section}.{key}"


def test_a_key_for_another_source_kind_is_an_error(tmp_path: Path) -> None:
    document = {"sources": [{"id": "f", "kind": "file", "url": "x.mp4", "transport": "udp"}],
                "model": {"path": "builtin:synthetic-shapes"}}
    with pytest.raises(ConfigError, match=r"sources\[0\]\.transport.*rtsp"):
        parse_config(document, tmp_path)


REGISTRY_KEYS = [(section, f.name) for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)
                 if allowed_values(f.metadata) and f.name != "kind"]  # an unknown kind has its own message


@pytest.mark.parametrize(("section", "key"), REGISTRY_KEYS)
def test_values_outside_a_registry_are_errors(tmp_path: Path, section: str, key: str) -> None:
    source = {"id": "s", "kind": "rtsp" if section == "sources" else "synthetic"}
    if source["kind"] == "rtsp":
        source["url"] = "rtsp://127.0.0.1/x"
    document: dict = {"sources": [source], "model": {"path": "builtin:synthetic-shapes"}}
    table = source if section == "sources" else document.setdefault(section, {})
    if section == "sinks":  # an array of tables, each of a kind the key applies to
        kinds = dict(user_fields(SECTIONS["sinks"]))[key].metadata.get("kinds", ())
        table = {"kind": kinds[0] if kinds else "mqtt"}
        document["sinks"] = [table]
    table[key] = "no-such-value"
    with pytest.raises(ConfigError, match="is not one of"):
        parse_config(document, tmp_path)
