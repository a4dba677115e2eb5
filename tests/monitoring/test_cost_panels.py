"""The dashboard's Cost row: its panels are there, and promtool evaluates their own queries
over known series to the figures the price lists give (reads per project per day, GCS
operations per day, dollars per day at list prices). A missing promtool fails, never skips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.monitoring.render_dashboard import Panel, load_dashboard, panels, substitute
from tests.monitoring.test_alerts import run_promtool

ROW = "Cost (an estimate at list prices)"
PROJECTS = {"ready": 400, "error": 100}
"""The projects gauge: 500 projects by status after the last sweep."""
PER_MINUTE = {"reads": {"sweep": 1000, "feed": 10}, "ops": {"A": 60, "B": 6}}
"""Steady increases of the counters, per minute, over two hours."""
DAY = 1440
"""Minutes in a day."""


def cost_panels() -> dict[str, Panel]:
    """The panels laid out under the Cost row, by title."""
    dashboard = load_dashboard()
    [row] = [p for p in dashboard["panels"] if p["type"] == "row" and p["title"] == ROW]
    under = {p["id"] for p in dashboard["panels"]
             if p["gridPos"]["y"] == row["gridPos"]["y"] + 1}
    return {panel.title: panel for panel in panels(dashboard) if panel.id in under}


def test_the_cost_row_draws_reads_per_project_operations_and_an_estimate() -> None:
    found = cost_panels()
    assert set(found) == {"Firestore reads per project per day by trigger",
                          "GCS operations per day by class",
                          "Estimated cost per day (list prices, not a bill)"}
    [estimate] = [p for p in load_dashboard()["panels"] if p["title"].startswith("Estimated")]
    assert "estimate" in estimate["description"]
    assert "not a promise" in estimate["description"]
    assert estimate["fieldConfig"]["defaults"]["unit"] == "currencyUSD"


def series() -> list[dict[str, str]]:
    labels = 'reconciler="ns.reels"'
    found = [{"series": f'reel_reconciler_projects{{{labels}, status="{status}"}}',
              "values": f"{count}x120"} for status, count in PROJECTS.items()]
    found += [{"series": f'reel_reconciler_firestore_documents_read_total{{{labels}, '
                         f'trigger="{trigger}"}}', "values": f"0+{n}x120"}
              for trigger, n in PER_MINUTE["reads"].items()]
    found += [{"series": f'reel_reconciler_gcs_operations_total{{{labels}, class="{kind}", '
                         f'trigger="sweep"}}', "values": f"0+{n}x120"}
              for kind, n in PER_MINUTE["ops"].items()]
    return found


def expected() -> dict[tuple[str, str], list[tuple[dict[str, str], float]]]:
    """Each target's samples, from the per-minute increases and the list prices, computed
    in Prometheus's order (per-second rates first: promtool compares floats exactly)."""
    projects = sum(PROJECTS.values())
    reads, ops = PER_MINUTE["reads"], PER_MINUTE["ops"]
    per_day = sum(n / 60 for n in reads.values()) * 86400 / 100_000
    return {
        ("Firestore reads per project per day by trigger", "A"):
            [({"trigger": trigger}, n * DAY / projects) for trigger, n in reads.items()],
        ("GCS operations per day by class", "A"):
            [({"class": kind}, float(n * DAY)) for kind, n in ops.items()],
        ("Estimated cost per day (list prices, not a bill)", "A"):
            [({}, per_day * 0.03)],
        ("Estimated cost per day (list prices, not a bill)", "B"):
            [({}, per_day * 0.06)],
        ("Estimated cost per day (list prices, not a bill)", "C"):
            [({}, (ops["A"] * 0.005 + ops["B"] * 0.0004) * DAY / 1000)],
    }


def test_promtool_evaluates_the_cost_panels_to_the_list_price_figures(
        promtool: Path, tmp_path: Path) -> None:
    cases: list[dict[str, Any]] = []
    wanted = expected()
    for panel in cost_panels().values():
        for target in panel.targets:
            samples = wanted.pop((panel.title, target.ref_id))
            cases.append({
                "expr": substitute(target.expr, reconciler=".*"), "eval_time": "2h",
                "exp_samples": [{"labels": "{" + ", ".join(f'{k}="{v}"' for k, v in
                                                           labels.items()) + "}",
                                 "value": value} for labels, value in samples]})
    assert wanted == {}, f"targets the test expects but the dashboard lacks: {sorted(wanted)}"
    spec = {"rule_files": [], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series(),
                       "promql_expr_test": cases}]}
    path = tmp_path / "cost_test.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = run_promtool(promtool, "test", "rules", str(path))
    assert result.returncode == 0, f"promtool test rules failed:\n{result.stdout}{result.stderr}"
    assert "SUCCESS" in result.stdout, result.stdout
