"""[preview]: defaults (off, 127.0.0.1), every key checked and named in the error, the demo has it on."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamd.config.load import parse_config
from streamd.config.schema import DEFAULT_PREVIEW_BIND
from streamd.errors import ConfigError
from streamd.models.demo_config import demo_config_document


def _document(tiny_model: Path, preview: dict | None) -> dict:
    document = {"sources": [{"id": "cam", "kind": "synthetic"}], "model": {"path": str(tiny_model)}}
    if preview is not None:
        document["preview"] = preview
    return document


def test_defaults_are_off_and_local(tiny_model: Path) -> None:
    preview = parse_config(_document(tiny_model, None)).preview
    assert not preview.enabled and preview.bind == DEFAULT_PREVIEW_BIND and preview.bind.startswith("127.0.0.1:")


@pytest.mark.parametrize(("table", "key"), [
    ({"fps": 0}, "preview.fps"),
    ({"fps": 100}, "preview.fps"),
    ({"max_width": 8}, "preview.max_width"),
    ({"jpeg_quality": 0}, "preview.jpeg_quality"),
    ({"max_viewers": 0}, "preview.max_viewers"),
    ({"client_timeout_seconds": 0}, "preview.client_timeout_seconds"),
    ({"bind": "nowhere"}, "preview.bind"),
    ({"bind": "127.0.0.1:70000"}, "preview.bind"),
    ({"colour": "red"}, "preview.colour"),
    ({"enabled": "yes"}, "preview.enabled"),
])
def test_bad_values_name_the_key(tiny_model: Path, table: dict, key: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(_document(tiny_model, table))
    assert error.value.key == key


def test_the_demo_serves_the_preview() -> None:
    preview = parse_config(demo_config_document()).preview
    assert preview.enabled and preview.bind == "127.0.0.1:9401"


def test_check_tries_the_preview_port(tiny_model: Path) -> None:
    import socket  # noqa: PLC0415

    from streamd.daemon.check import _check_ports  # noqa: PLC0415

    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        document = _document(tiny_model, {"enabled": True, "bind": f"127.0.0.1:{port}"})
        document["metrics"] = {"enabled": False}
        document["publish"] = {"endpoint": "tcp://127.0.0.1:*"}
        lines: list[str] = []
        assert not _check_ports(parse_config(document), lines.append)
    assert any(line.startswith("preview ") and "FAILED" in line and "preview.bind" in line for line in lines), lines


def test_operating_page_and_example_config_document_every_preview_key() -> None:
    import dataclasses  # noqa: PLC0415

    from streamd.config.schema import PreviewConfig  # noqa: PLC0415
    from tests.support import REPO  # noqa: PLC0415

    page = (REPO / "docs" / "operating.md").read_text()
    table = page[page.index("### The `[preview]` keys"):]  # the key table, not an earlier mention of the section
    table = table[:table.index("\n\n", table.index("| key |"))]
    example = (REPO / "configs" / "example.toml").read_text()
    example = example[example.index("[preview]"):]
    for field in dataclasses.fields(PreviewConfig):
        assert f"| `{field.name}` |" in table, f"docs/operating.md's [preview] table lacks {field.name}"
        assert f"\n{field.name} = " in example, f"configs/example.toml's [preview] lacks {field.name}"
