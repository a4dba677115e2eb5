"""Draw the panels of the chart's Grafana dashboard from a Prometheus server, as a PNG.

Each panel's queries run through `/api/v1/query_range` (Grafana's variables replaced the way
Grafana would) and become one small line chart titled like the panel.

    python -m tests.monitoring.render_dashboard --prometheus http://127.0.0.1:9090 \\
        --since 10m --out charts/reel-reconciler/dashboard.png

Needs matplotlib. The query helpers here are also used by tests/monitoring/test_dashboard.py.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "charts/reel-reconciler/files/dashboard.json"
PNG = REPO / "charts/reel-reconciler/dashboard.png"


@dataclass(frozen=True)
class Target:
    ref_id: str
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    id: int
    title: str
    type: str
    targets: tuple[Target, ...]


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def panels(dashboard: dict[str, Any]) -> list[Panel]:
    """Every panel with queries (rows, also collapsed rows' children), in layout order."""
    found: list[Panel] = []
    for raw in dashboard.get("panels", []):
        for panel in [raw, *raw.get("panels", [])]:
            targets = tuple(Target(t.get("refId", "A"), t["expr"], t.get("legendFormat", ""))
                            for t in panel.get("targets", []) if t.get("expr"))
            if targets:
                found.append(Panel(panel["id"], panel["title"], panel["type"], targets))
    return found


def duration(seconds: float) -> str:
    """A PromQL duration, whole seconds, at least 1s."""
    return f"{max(1, math.ceil(seconds))}s"


def substitute(expr: str, *, reconciler: str = ".*", rate_interval: str = "15s",
               interval: str = "5s", range_: str = "5m") -> str:
    """Replace Grafana's variables in a panel query, as Grafana does before sending it."""
    values = {"reconciler": reconciler, "__rate_interval": rate_interval,
              "__interval": interval, "__range": range_}

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise ValueError(f"unknown dashboard variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def legend(template: str, labels: dict[str, str]) -> str:
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    return text.strip() or ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"


def clock(seconds: float, _position: float | None = None) -> str:
    """Tick label for an epoch-seconds x axis."""
    return f"{datetime.fromtimestamp(seconds):%H:%M:%S}"


def query_range(prometheus: str, expr: str, start: float, end: float,
                step: float) -> list[dict[str, Any]]:
    response = requests.get(f"{prometheus}/api/v1/query_range", timeout=30, params={
        "query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:.3f}"})
    body = response.json()
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body.get('error')}")
    return list(body["data"]["result"])


def render(prometheus: str, out: Path, start: float, end: float, *,
           dashboard: dict[str, Any] | None = None, reconciler: str = ".*",
           rate_interval: str = "15s", columns: int = 4) -> Path:
    """Query every panel over [start, end] and save a grid of line charts to `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    found = panels(dashboard or load_dashboard())
    step = max(1.0, (end - start) / 300)
    rows = math.ceil(len(found) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.0 * rows), squeeze=False)
    title = (dashboard or load_dashboard()).get("title", "dashboard")
    fig.suptitle(f"{title}: {datetime.fromtimestamp(start):%Y-%m-%d %H:%M:%S} to "
                 f"{datetime.fromtimestamp(end):%H:%M:%S}", fontsize=12)
    for ax, panel in zip(axes.flat, found, strict=False):
        multi = len(panel.targets) > 1
        for target in panel.targets:
            expr = substitute(target.expr, reconciler=reconciler, rate_interval=rate_interval,
                              interval=duration(step), range_=duration(end - start))
            for series in query_range(prometheus, expr, start, end, step):
                points = [(float(t), float(v)) for t, v in series["values"]]
                label = legend(target.legend, series["metric"])
                if multi and not target.legend:
                    label = f"{target.ref_id}: {label}"
                ax.plot([p[0] for p in points], [p[1] for p in points], linewidth=1.2,
                        label=label)
        ax.set_title(panel.title + (" (stat)" if panel.type == "stat" else ""), fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlim(start, end)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.xaxis.set_major_formatter(FuncFormatter(clock))
        ax.grid(alpha=0.3)
        if ax.lines and all(min(line.get_ydata(), default=0) >= 0 for line in ax.lines):
            ax.set_ylim(bottom=0)
        if ax.lines:
            ax.legend(fontsize=6, loc="upper left", ncol=1 + len(ax.lines) // 7,
                      framealpha=0.6)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    for ax in list(axes.flat)[len(found):]:
        ax.axis("off")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", required=True, help="e.g. http://127.0.0.1:9090")
    parser.add_argument("--since", default="15m",
                        help="time range ending now: 90s, 15m, 2h (default 15m)")
    parser.add_argument("--reconciler", default=".*", help="value of $reconciler (a regex)")
    parser.add_argument("--rate-interval", default="1m", help="value of $__rate_interval")
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD)
    parser.add_argument("--out", type=Path, default=PNG)
    args = parser.parse_args(argv)
    match = re.fullmatch(r"(\d+)([smh])", args.since)
    if not match:
        parser.error("--since takes a number and s, m or h")
    seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]
    end = time.time()
    out = render(args.prometheus.rstrip("/"), args.out, end - seconds, end,
                 dashboard=load_dashboard(args.dashboard), reconciler=args.reconciler,
                 rate_interval=args.rate_interval)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
