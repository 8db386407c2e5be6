"""Optional extras: the table matches pyproject.toml, and only a missing extra turns an import
failure into a one-line hint; every other import failure crashes with its traceback."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tritium.extras import EXTRA_MODULES, Extra, MissingExtraError, extra_for_missing, require

REPO = Path(__file__).resolve().parents[2]


def _declared(extra: Extra) -> set[str]:
    """The distributions pyproject.toml's extra adds (from the installed metadata)."""
    requirements = importlib.metadata.requires("tritium") or []
    return {
        re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()
        for requirement in requirements
        if re.search(rf"extra == \"{extra.value}\"", requirement)
    }


def test_the_table_lists_every_distribution_of_each_extra() -> None:
    for extra in Extra:
        assert _declared(extra) == set(EXTRA_MODULES[extra].values()), extra


def test_each_import_name_belongs_to_its_distribution() -> None:
    installed = importlib.metadata.packages_distributions()
    for modules in EXTRA_MODULES.values():
        for module, distribution in modules.items():
            names = {re.sub(r"[-_.]+", "-", d).lower() for d in installed.get(module, [])}  # PEP 503
            assert distribution in names, (module, distribution)


def test_a_missing_extra_module_becomes_a_hint_naming_the_commands_extra() -> None:
    error = extra_for_missing(ModuleNotFoundError("No module named 'torch'", name="torch"), command="build")
    assert isinstance(error, MissingExtraError) and error.exit_code == 6
    assert error.one_line() == (
        "`tritium build` needs 'torch', which is not installed — install the 'builder' extra: "
        "pip install 'tritium[builder]'"
    )
    # onnxruntime is in two extras: the command decides which one the hint names
    served = extra_for_missing(ModuleNotFoundError(name="onnxruntime.capi"), command="serve")
    assert served is not None and served.extra is Extra.serve


@pytest.mark.parametrize("name", ["tritium.serving.nosuch", "typer", "yaml", None])
def test_anything_else_is_not_hidden(name) -> None:
    assert extra_for_missing(ModuleNotFoundError(name=name), command="serve") is None


def test_require_checks_without_importing() -> None:
    require(Extra.builder, "onnx", what="x")
    with pytest.raises(MissingExtraError, match=r"x needs 'nosuchmodule'.*tritium\[gateway\]"):
        require(Extra.gateway, "nosuchmodule", what="x")


_BLOCKING = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {blocked!r}:
            raise {error}
sys.meta_path.insert(0, Block())
from tritium.cli import main
raise SystemExit(main({argv!r}))
"""


def _cli_with_broken_import(blocked: str, error: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    code = _BLOCKING.format(blocked=blocked, error=error, argv=argv)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_missing_extra_at_run_time_is_one_line(tmp_path: Path) -> None:
    result = _cli_with_broken_import(
        "pytriton", "ModuleNotFoundError('no', name='pytriton')", ["serve", "--repository", str(tmp_path)]
    )
    assert result.returncode == 6, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: the local Triton needs 'nvidia-pytriton', which is not installed — install the 'serve' "
        "extra: pip install 'tritium[serve]'"
    ]


@pytest.mark.parametrize(
    ("blocked", "error"),
    [
        ("tritium.serving.cli", "ImportError('cannot import name x')"),
        ("tritium.gateway.cli", "ModuleNotFoundError('no', name='tritium.gateway.cli')"),
    ],
)
def test_a_real_import_bug_in_a_command_module_crashes_with_its_traceback(blocked: str, error: str) -> None:
    result = _cli_with_broken_import(blocked, error, ["--help"])
    assert result.returncode == 1
    assert "Traceback" in result.stderr and blocked.rsplit(".", 1)[0] in result.stderr


def test_a_real_import_bug_inside_a_command_crashes_with_its_traceback(tmp_path: Path) -> None:
    result = _cli_with_broken_import(
        "tritium.serving.local",
        "ModuleNotFoundError('no', name='tritium.serving.local')",
        ["serve", "--repository", str(tmp_path)],
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "tritium.serving.local" in result.stderr
