"""mkdocs hook: serve the repository files the pages link to (result JSON, configs, units, ops) at
their repository paths, so a page links `benchmarks/results/NAME.json` and strict mode checks it."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[2]
SERVED = ("benchmarks/results", "configs", "systemd", "ops")


def on_files(files: Files, config: dict) -> Files:
    for folder in SERVED:
        for path in sorted((REPO / folder).rglob("*")):
            if path.is_file():
                files.append(File(path.relative_to(REPO).as_posix(), str(REPO), config["site_dir"],
                                  config["use_directory_urls"]))
    return files
