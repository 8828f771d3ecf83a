"""The alert rules are code: promtool checks them and runs their unit tests, and every alert in
the rules file has a test that fires it and one where it stays quiet."""

from __future__ import annotations

import re
import subprocess

from tests.ops.support import RULE_TESTS, RULES, prometheus_binary
from tests.support import REPO


def test_promtool_check_rules() -> None:
    result = subprocess.run([prometheus_binary("promtool"), "check", "rules", str(RULES)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    result = subprocess.run([prometheus_binary("promtool"), "test", "rules", RULE_TESTS.name],
                            capture_output=True, text=True, timeout=300, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _alerts() -> set[str]:
    return set(re.findall(r"^\s*- alert: (\w+)$", RULES.read_text(), re.MULTILINE))


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    # promtool's format, read line by line (no YAML library in the test dependencies): each case is
    # "alertname: NAME" followed by "exp_alerts: []" (quiet) or "exp_alerts:" and a list (fires).
    cases = re.findall(r"alertname: (\w+)\n\s*exp_alerts:(.*)$", RULE_TESTS.read_text(), re.MULTILINE)
    fired = {name for name, rest in cases if rest.strip() != "[]"}
    quiet = {name for name, rest in cases if rest.strip() == "[]"}
    assert len(_alerts()) >= 9
    assert _alerts() - fired == set(), "alerts never tested firing"
    assert _alerts() - quiet == set(), "alerts never tested staying quiet"


def test_every_alert_has_a_runbook_section() -> None:
    operating = (REPO / "docs" / "operating.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
               for line in operating.splitlines() if line.startswith("#")}
    urls = re.findall(r'runbook_url: "docs/operating.md#([a-z0-9-]+)"', RULES.read_text())
    assert {url for url in urls} == {alert.lower() for alert in _alerts()}
    assert set(urls) <= anchors, f"docs/operating.md lacks sections for {set(urls) - anchors}"
