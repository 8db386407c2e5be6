"""scripts/: setting up a machine takes Prometheus's binaries only, and never starts or ends a process.

Debian's `prometheus` package starts a system Prometheus from its postinst; the old bootstrap then
ended it with `service prometheus stop || pkill -x prometheus`, which on a user's machine ends
*their* Prometheus. The installer now unpacks the package file without running its scripts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
INSTALLER = SCRIPTS / "install-prometheus.sh"

# What a script must never run: ending processes by name, starting or stopping system services,
# installing system packages (whose scripts start services).
FORBIDDEN = re.compile(
    r"\b(pkill|killall|service|systemctl|invoke-rc\.d|update-rc\.d|deb-systemd-invoke|dpkg\s+-i)\b"
    r"|apt-get\s+(-\S+\s+)*install"
)
# `kill` only for a pid the script holds in a variable (its own children: see the next test).
KILL = re.compile(r"\bkill\b")
OWN_PID_KILL = re.compile(r'\bkill\s+(-(TERM|INT|0)\s+)?"\$\{?\w+\}?"')


def _code(script: Path) -> list[str]:
    """The script's lines without comments (a line's ``#`` comment, or a whole comment line)."""
    lines = []
    for line in script.read_text().splitlines():
        code = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
        lines.append(code)
    return lines


@pytest.mark.parametrize("script", sorted(SCRIPTS.glob("*.sh")), ids=lambda p: p.name)
def test_no_script_ends_a_process_it_did_not_start_or_touches_a_service(script: Path) -> None:
    code = _code(script)
    assert [line for line in code if FORBIDDEN.search(line)] == []
    kills = [line for line in code if KILL.search(line)]
    assert [line for line in kills if not OWN_PID_KILL.search(line)] == [], "kill only a pid in a variable"
    # ... and those pids are the script's own background jobs ($!), nothing looked up
    pid_sources = [line for line in code if re.search(r"\bpids(\+)?=\(", line)]
    assert all(re.search(r"pids(\+=\(\$!\)|=\(\))", line) for line in pid_sources), pid_sources


def test_bootstrap_takes_the_binaries_into_the_venv() -> None:
    code = "\n".join(_code(SCRIPTS / "bootstrap.sh"))
    assert "scripts/install-prometheus.sh .venv/bin" in code
    assert "scripts/install-load-generators.sh .venv/bin" in code  # h2load and wrk, same way


@pytest.fixture
def package(tmp_path: Path) -> tuple[Path, Path]:
    """A real .deb shaped like Debian's prometheus: two binaries, a service, and a postinst that
    starts something (as Debian's does with invoke-rc.d) and leaves a mark."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed (not a Debian machine)")
    marker = tmp_path / "maintainer-script-ran"
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: prometheus\nVersion: 9.9.9-test\nArchitecture: all\n"
        "Maintainer: Tritium tests <tests@example.invalid>\nDescription: shaped like Debian's prometheus\n"
    )
    for script in ("preinst", "postinst"):
        path = root / "DEBIAN" / script
        path.write_text(f'#!/bin/sh\necho {script} >> "{marker}"\nsleep 600 &\n')
        path.chmod(0o755)
    (root / "usr" / "bin").mkdir(parents=True)
    for tool in ("prometheus", "promtool"):
        path = root / "usr" / "bin" / tool
        path.write_text(f'#!/bin/sh\necho "{tool}, version 9.9.9-test"\n')
        path.chmod(0o755)
    (root / "lib" / "systemd" / "system").mkdir(parents=True)
    (root / "lib" / "systemd" / "system" / "prometheus.service").write_text(
        "[Service]\nExecStart=/bin/false\n"
    )
    deb = tmp_path / "prometheus_9.9.9-test_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True, capture_output=True
    )
    return deb, marker


def _install(deb: Path, dest: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRITIUM_PROMETHEUS_DEB": str(deb)}
    return subprocess.run([str(INSTALLER), str(dest)], env=env, capture_output=True, text=True, timeout=60)


def test_the_installer_copies_the_two_binaries_and_runs_no_package_script(package, tmp_path: Path) -> None:
    deb, marker = package
    dest = tmp_path / "venv" / "bin"
    for _ in range(2):  # and again: idempotent
        result = _install(deb, dest)
        assert result.returncode == 0, result.stderr
        assert "installed prometheus, version 9.9.9-test into" in result.stdout
        assert sorted(p.name for p in dest.iterdir()) == ["prometheus", "promtool"]
    assert not marker.exists(), "a maintainer script of the package ran"
    version = subprocess.run(
        [str(dest / "promtool"), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == "promtool, version 9.9.9-test"


def test_a_broken_package_fails_and_changes_nothing(tmp_path: Path) -> None:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed (not a Debian machine)")
    broken = tmp_path / "prometheus.deb"
    broken.write_bytes(b"not a package")
    dest = tmp_path / "bin"
    result = _install(broken, dest)
    assert result.returncode != 0
    assert not dest.exists()
