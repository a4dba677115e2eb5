"""The chart's alert rules: valid for promtool, and each alert fires and stays silent as its
unit tests (tests/monitoring/alerts_test.yaml) say. A missing promtool fails, never skips."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "charts/reel-reconciler/files/alerts.yaml"
RULE_TESTS = Path(__file__).resolve().parent / "alerts_test.yaml"
ALERTS = {
    "ReelReconcilerDown", "ReelReconcilerListenerStale", "ReelReconcilerReconcileErrorsHigh",
    "ReelReconcilerSweepNotCompleting", "ReelReconcilerPersistentDrift",
    "ReelReconcilerStaleJobsSpike", "ReelReconcilerSlowHeal", "ReelReconcilerNotRunning",
    "ReelReconcilerSplitBrain", "ReelReconcilerBreakerTripped", "ReelReconcilerRangeNotSwept",
}


def run_promtool(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO, check=False)


def rules() -> list[dict[str, object]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_promtool_check_rules(promtool: Path) -> None:
    result = run_promtool(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, f"promtool check rules failed:\n{result.stdout}{result.stderr}"
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout, result.stdout


def test_promtool_unit_tests_pass(promtool: Path) -> None:
    result = run_promtool(promtool, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, f"promtool test rules failed:\n{result.stdout}{result.stderr}"
    assert "SUCCESS" in result.stdout, result.stdout


def test_every_alert_is_documented() -> None:
    found = {str(rule["alert"]) for rule in rules()}
    assert found == ALERTS
    for rule in rules():
        annotations = rule.get("annotations")
        assert isinstance(annotations, dict), rule["alert"]
        missing = {"summary", "description", "runbook"} - set(annotations)
        assert not missing, f"{rule['alert']} lacks annotations {sorted(missing)}"
        assert str(annotations["runbook"]).endswith("#" + str(rule["alert"]).lower())
        labels = rule.get("labels")
        assert isinstance(labels, dict)
        assert labels.get("severity") in ("warning", "critical")


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    """Count the unit-test cases: for each alert an eval with alerts and one without."""
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fires: set[str] = set()
    silent: set[str] = set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    assert fires == ALERTS, f"alerts without a firing case: {sorted(ALERTS - fires)}"
    assert silent == ALERTS, f"alerts without a silent case: {sorted(ALERTS - silent)}"


def test_chart_readme_has_a_runbook_for_every_alert() -> None:
    readme = (Path(__file__).resolve().parents[2] / "charts/reel-reconciler/README.md").read_text()
    headings = set(re.findall(r"^### (\w+)$", readme, flags=re.MULTILINE))
    assert headings == ALERTS
