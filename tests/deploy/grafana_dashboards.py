"""Reading the provisioned dashboards: panels, their queries, and template variables."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.conftest import GRAFANA_DIR

DASHBOARD_DIR = GRAFANA_DIR / "dashboards"
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range"}
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref: str
    expr: str

    @property
    def name(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref}"


def dashboards() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(dashboard: dict) -> Iterator[dict]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def panel_queries() -> list[PanelQuery]:
    found = []
    for name, board in dashboards().items():
        for panel in panels(board):
            for target in panel.get("targets", []):
                found.append(PanelQuery(name, panel["title"], target["refId"], target["expr"]))
    return found


def variables_in(text: str) -> set[str]:
    return set(_VARIABLE.findall(text))


def generator_module():
    return grafana_script("generate_dashboards")


def grafana_script(name: str):
    """A script of deploy/grafana (generate_dashboards, render_preview), loaded by path: deploy/ is not a package."""
    path = GRAFANA_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"tritium_deploy_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace $var and ${var} as Grafana does before sending the query to Prometheus."""
    return _VARIABLE.sub(lambda m: values[m.group(1)], expr)


def read_dashboard(path: Path) -> dict:
    return json.loads(path.read_text())
