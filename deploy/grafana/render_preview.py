"""Render a Tritium dashboard as a PNG from a live Prometheus (there is no Grafana engine here).

    python deploy/grafana/render_preview.py --prometheus http://127.0.0.1:9090 \
        --dashboard tritium-overview --out docs/img/dashboard-overview.png --minutes 10

Each panel's own PromQL (template variables filled in) is queried over the time range and drawn
with matplotlib at the panel's place on the dashboard's grid: a rendering of the dashboard's
queries, not a Grafana screenshot. tests/deploy/test_live_monitoring.py renders one from a real
Prometheus scraping a real Triton and gateway; TRITIUM_WRITE_PREVIEW=1 makes it write docs/img/.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

DASHBOARD_DIR = Path(__file__).parent / "dashboards"
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")

COL_IN, ROW_IN = 0.82, 0.34  # Grafana's grid: 24 columns, 30 px rows
BACKGROUND, PANEL, TEXT, GRID = "#111217", "#181b1f", "#ccccdc", "#2c3235"
PALETTE = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff", "#ff780a"]
UNITS = {"s": (1000.0, "ms"), "percentunit": (100.0, "%"), "reqps": (1.0, "req/s"), "percent": (1.0, "%")}


@dataclass
class Rendered:
    path: Path
    series_per_panel: dict[str, int] = field(default_factory=dict)


def load_dashboard(name: str) -> dict:
    return json.loads((DASHBOARD_DIR / f"{name}.json").read_text())


def fill(text: str, values: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda m: values.get(m.group(1), BUILTINS.get(m.group(1), m.group(0))), text)


def legend(fmt: str, labels: dict[str, str]) -> str:
    if not fmt or fmt == "__auto":
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__") or "value"
    return _LEGEND.sub(lambda m: labels.get(m.group(1), ""), fmt)


class Prometheus:
    def __init__(self, url: str, client: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self.client = client or httpx.Client(timeout=10)

    def _get(self, path: str, params: dict) -> dict:
        response = self.client.get(f"{self.url}{path}", params=params)
        response.raise_for_status()
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus: {body.get('error')} for {params}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self._get("/api/v1/query", {"query": expr})["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        return self._get("/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})[
            "result"
        ]


def _scaled(unit: str) -> tuple[float, str]:
    return UNITS.get(unit, (1.0, "" if unit in ("none", "short") else unit))


def _style(ax, title: str) -> None:  # type: ignore[no-untyped-def]
    ax.set_facecolor(PANEL)
    for spine in ax.spines.values():
        spine.set_color(GRID)
    ax.tick_params(colors=TEXT, labelsize=6)
    ax.grid(color=GRID, linewidth=0.5)
    ax.set_title(title, color=TEXT, fontsize=8, loc="left")


def _draw_timeseries(ax, panel: dict, prom: Prometheus, values: dict, start: float, end: float) -> int:  # type: ignore[no-untyped-def]
    factor, unit = _scaled(panel.get("fieldConfig", {}).get("defaults", {}).get("unit", ""))
    drawn = 0
    step = max(1.0, (end - start) / 240)
    for target in panel["targets"]:
        for series in prom.query_range(fill(target["expr"], values), start, end, step):
            points = [(float(t), float(v) * factor) for t, v in series["values"] if math.isfinite(float(v))]
            if not points:
                continue
            xs = [t - end for t, _ in points]
            ys = [v for _, v in points]
            ax.plot(
                xs,
                ys,
                linewidth=1.1,
                color=PALETTE[drawn % len(PALETTE)],
                label=legend(target.get("legendFormat", ""), series["metric"]),
            )
            drawn += 1
    _style(ax, fill(panel["title"], values))
    ax.set_xlabel("seconds ago", color=TEXT, fontsize=6)
    if unit:
        ax.set_ylabel(unit, color=TEXT, fontsize=6)
    if drawn:
        ax.legend(fontsize=5, loc="upper left", facecolor=PANEL, edgecolor=GRID, labelcolor=TEXT, ncol=2)
    return drawn


def _draw_stat(ax, panel: dict, prom: Prometheus, values: dict) -> int:  # type: ignore[no-untyped-def]
    factor, unit = _scaled(panel.get("fieldConfig", {}).get("defaults", {}).get("unit", ""))
    result = prom.query(fill(panel["targets"][0]["expr"], values))
    _style(ax, panel["title"])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if result:
        value = float(result[0]["value"][1]) * factor
        shown = (
            "yes"
            if unit == "bool_yes_no" and value == 1
            else f"{value:.3g} {unit if unit != 'bool_yes_no' else ''}"
        )
        ax.text(
            0.5,
            0.4,
            shown.strip(),
            color=PALETTE[0],
            fontsize=16,
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    return len(result)


def _draw_table(ax, panel: dict, prom: Prometheus, values: dict) -> int:  # type: ignore[no-untyped-def]
    result = prom.query(fill(panel["targets"][0]["expr"], values))
    _style(ax, panel["title"])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    rows = sorted(result, key=lambda s: -float(s["value"][1]))[:6]
    for i, series in enumerate(rows):
        labels = "  ".join(f"{k}={v}" for k, v in sorted(series["metric"].items()))
        ax.text(
            0.01,
            0.85 - i * 0.14,
            f"{labels}   {float(series['value'][1]):.0f}",
            color=TEXT,
            fontsize=6,
            transform=ax.transAxes,
            family="monospace",
        )
    return len(result)


def render(
    dashboard: dict,
    prometheus: Prometheus,
    out: Path,
    *,
    minutes: float = 10.0,
    variables: dict[str, str] | None = None,
) -> Rendered:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = {v["name"]: v.get("allValue") or ".*" for v in dashboard["templating"]["list"]}
    values.update(variables or {})
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels) + 2
    fig = plt.figure(figsize=(24 * COL_IN, rows * ROW_IN), facecolor=BACKGROUND)
    fig.text(0.01, 1 - 0.8 / rows, dashboard["title"], color=TEXT, fontsize=13, weight="bold")
    fig.text(
        0.99,
        1 - 0.8 / rows,
        "rendered from Prometheus with the dashboard's own queries (deploy/grafana/render_preview.py)",
        color=TEXT,
        fontsize=7,
        ha="right",
    )
    end = time.time()
    start = end - minutes * 60
    rendered = Rendered(out)
    for panel in panels:
        x, y, w, h = (panel["gridPos"][k] for k in ("x", "y", "w", "h"))
        top = 1 - (y + 2) / rows
        if panel["type"] == "row":
            fig.text(x / 24 + 0.005, top - 0.5 / rows, panel["title"], color=TEXT, fontsize=9, weight="bold")
            continue
        ax = fig.add_axes((x / 24 + 0.03, top - h / rows + 0.9 / rows, w / 24 - 0.04, h / rows - 1.5 / rows))
        values_here = {**values, panel["repeat"]: ".*"} if panel.get("repeat") else values
        if panel["type"] == "stat":
            count = _draw_stat(ax, panel, prometheus, values_here)
        elif panel["type"] == "table":
            count = _draw_table(ax, panel, prometheus, values_here)
        else:
            count = _draw_timeseries(ax, panel, prometheus, values_here, start, end)
        rendered.series_per_panel[panel["title"]] = count
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, facecolor=BACKGROUND)
    plt.close(fig)
    return rendered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--dashboard", default="tritium-overview")
    parser.add_argument("--out", type=Path, default=Path("docs/img/dashboard-overview.png"))
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--var", action="append", default=[], help="NAME=VALUE for a template variable")
    args = parser.parse_args()
    variables = dict(item.split("=", 1) for item in args.var)
    result = render(
        load_dashboard(args.dashboard),
        Prometheus(args.prometheus),
        args.out,
        minutes=args.minutes,
        variables=variables,
    )
    print(
        f"{result.path}: {sum(1 for n in result.series_per_panel.values() if n)}/{len(result.series_per_panel)} panels with data"
    )


if __name__ == "__main__":
    main()
