"""The fidelity report: one JSON document, and a short human summary of it on stdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO


def write_report(report: dict[str, Any], path: Path | None) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def print_summary(report: dict[str, Any], out: TextIO) -> None:
    fidelity = report.get("fidelity") or {}
    held_out = (report.get("evaluation") or {}).get("held_out", True)
    lines = [
        f"model        {report['model']} -> {report['output']} ({report['precision']}"
        + (f", {report['method']} calibration" if report["precision"] == "int8" else "") + ")",
    ]
    calibration = report.get("calibration")
    if calibration and "cache_path" in calibration:
        lines.append(f"calibration  {calibration['images']} images from {calibration['source']}, "
                     f"{calibration['skipped_unreadable']} unreadable skipped, cache "
                     f"{'hit' if calibration['cache_hit'] else 'written'}: {calibration['cache_path']}")
    if fidelity:
        lines.append(f"fidelity     mAP@0.5:0.95 {fidelity['map50_95']:.4f}  mAP@0.5 {fidelity['map50']:.4f} "
                     f"on {fidelity['images']} {'held-out' if held_out else 'evaluation'} images "
                     f"({fidelity['reference_detections']} float "
                     f"detections at score > {fidelity['reference_score_threshold']})")
    if "int8_conv_mac_share" in report:
        excluded = report.get("excluded_nodes", [])
        share, total_macs = report["int8_conv_mac_share"], report["conv_macs_total"]
        lines.append(f"int8         {share * 100:.1f} % of {total_macs / 1e6:.1f} M conv MACs; "
                     f"{len(excluded)} Conv nodes kept in float: "
                     + (", ".join(e["name"] for e in excluded) if excluded else "none"))
    engine = report.get("engine")
    if engine:
        lines.append(f"engine       {engine.get('path')}: {engine.get('status')}"
                     + (f" ({engine['error']})" if engine.get("error") else ""))
    verdict = report.get("verdict", {})
    lines.append(f"verdict      {'PASS' if verdict.get('passed') else 'FAIL'}"
                 + (f": {'; '.join(verdict['reasons'])}" if verdict.get("reasons") else ""))
    lines.append(f"time         {report['seconds']['total']:.1f} s")
    out.write("\n".join(lines) + "\n")
