"""scripts/demo_traffic.py against a gateway with an A/B route."""

import subprocess
import sys
from pathlib import Path

import yaml

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "demo_traffic.py"
ROUTES = {
    "routes": {
        "echo": {
            "targets": [
                {"alias": "stable", "model": "echo", "version": "1", "weight": 50},
                {"alias": "canary", "model": "echo", "version": "2", "weight": 50},
            ]
        }
    }
}


def test_demo_traffic_prints_the_split(gateway_factory, tmp_path):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    gw = gateway_factory()
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--gateway-url",
            gw.url,
            "--model",
            "echo",
            "--requests",
            "80",
            "--concurrency",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "160", "PATH": ""},
    )
    assert done.returncode == 0, done.stderr
    assert "80 requests" in done.stdout
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if line.count("│") >= 5}
    assert {"stable", "canary"} <= set(rows)
    counts = [int(rows[v].split("│")[2]) for v in ("stable", "canary")]
    assert sum(counts) == 80 and min(counts) >= 15
