"""`tritium build` / `tritium models list|show` through the real CLI entry point."""

import io
import json
import re
from pathlib import Path

import pytest

from tests.builder.tiny_models import write_tiny_project
from tritium.cli import main


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    recipe = write_tiny_project(
        root / "p",
        variants=[
            {"kind": "onnx-fp32"},
            {"kind": "onnx-int8-dynamic", "per_channel": True, "objective": "size"},
        ],
    )
    code = main(["build", str(recipe), "-r", str(root / "repo"), "-o", str(root / "out"), "--quiet"])
    assert code == 0
    return root


def test_build_prints_a_table_and_the_report(built, capsys, tmp_path):
    recipe = built / "p" / "recipe.yaml"
    assert (
        main(["build", str(recipe), "-r", str(tmp_path / "repo"), "-o", str(tmp_path / "out"), "--quiet"])
        == 0
    )
    out = capsys.readouterr().out
    assert "int8-dynamic-per-channel" in out and "accepted" in out
    assert "written: {'tiny': [1, 2]}" in out
    assert (tmp_path / "out" / "report.html").is_file()


def test_models_list(built, capsys):
    assert main(["models", "list", "-r", str(built / "repo")]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "onnxruntime_onnx" in out and "int8-dynamic-per-channel" in out


def test_models_show_config_and_lineage(built, capsys):
    assert main(["models", "show", "tiny", "-r", str(built / "repo")]) == 0
    out = capsys.readouterr().out
    assert 'platform: "onnxruntime_onnx"' in out
    assert "export-onnx" in out and "quantize-dynamic-int8" in out


def test_models_show_one_version_as_json(built, capsys):
    assert main(["models", "show", "tiny", "-r", str(built / "repo"), "--version", "2"]) == 0
    lineage = json.loads(capsys.readouterr().out)
    assert lineage["version"] == 2 and lineage["parent_version"] == 1


def test_models_show_unknown_model(built, capsys):
    assert main(["models", "show", "nope", "-r", str(built / "repo")]) == 2
    err = capsys.readouterr().err
    assert "model 'nope' is not in" in err and "models: tiny" in err


def test_models_show_unknown_version(built, capsys):
    assert main(["models", "show", "tiny", "-r", str(built / "repo"), "--version", "9"]) == 2
    assert "has no version 9" in capsys.readouterr().err


def test_build_missing_recipe(capsys, tmp_path):
    assert main(["build", str(tmp_path / "none.yaml"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_models_list_fits_an_80_column_terminal_without_cutting_a_cell(built, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["models", "list", "-r", str(built / "repo")]) == 0
    out = capsys.readouterr().out
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    # names break after their hyphens, the platform sits whole under the model, the date is minutes
    assert "int8-dynamic-" in out and "per-channel" in out and "onnxruntime_onnx" in out
    assert re.search(r"\b\d{4}-\d{2}-\d{2}\b", out) and re.search(r"\b\d{2}:\d{2}\b", out)


def test_models_list_on_a_wide_terminal_keeps_names_whole(built, capsys):
    assert main(["models", "list", "-r", str(built / "repo")]) == 0  # COLUMNS=250
    out = capsys.readouterr().out
    assert "int8-dynamic-per-channel" in out and re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", out)


def test_models_list_folds_what_it_cannot_break_and_shows_times_in_utc():
    from rich.console import Console
    from tritonclient.grpc import model_config_pb2 as mc

    from tritium.builder.cli import _models_table
    from tritium.builder.repository import ModelInfo, VersionInfo

    lineage = {
        "variant": "customer.segment.int8_static_entropy_per_channel",
        "metric": {"name": "neighbor_top1", "value": 0.98765},
        "size_bytes": 123_456_789,
        "created_at": "2026-11-27T23:59:59-08:00",
    }
    name = "averyveryveryverylongmodelnamewithoutseparators"
    edited = {"variant": "[b]x[/b]", "metric": {"name": "top1", "value": "high"}, "created_at": 5}
    models = [
        ModelInfo(
            name,
            Path("."),
            mc.ModelConfig(platform="onnxruntime_onnx"),
            (VersionInfo(12, Path("."), lineage, False), VersionInfo(13, Path("."), edited, True)),
        )
    ]
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(_models_table("repo", models, narrow=True))
    out = console.export_text()
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 80
    assert "averyveryveryver" in out and "neighbor_" in out and "123.46" in out
    assert "2026-11-28" in out and "07:59" in out  # 23:59:59 at UTC-8
    assert "[b]x[/b]" in out and "top1 ?" in out  # a hand-edited lineage is shown, not obeyed


def test_a_failed_variant_is_printed_and_exits_7(capsys, tmp_path):
    # TorchScript's compiler rejects forward(*inputs); the ONNX export takes it: one variant fails
    recipe = write_tiny_project(
        tmp_path / "p",
        source={"kind": "pytorch", "factory": "tests.builder.tiny_models:var_args"},
        variants=[{"kind": "onnx-fp32", "objective": "none"}, {"kind": "torchscript", "method": "script"}],
    )
    code = main(["build", str(recipe), "-r", str(tmp_path / "repo"), "-o", str(tmp_path / "out"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 7, captured.err
    assert "torchscript failed: " in captured.out  # the reason, in full, under the table
    assert "written: {'tiny': [1]}" in captured.out
    err = captured.err.strip()
    assert err.startswith("error: 1 of 2 variants the recipe asked for failed (torchscript")
    assert len(err.splitlines()) == 1
    assert (tmp_path / "repo" / "tiny" / "1" / "model.onnx").is_file()


def test_every_variant_failing_is_a_conversion_error(capsys, tmp_path):
    recipe = write_tiny_project(
        tmp_path / "p",
        source={"kind": "pytorch", "factory": "tests.builder.tiny_models:var_args"},
        variants=[{"kind": "torchscript", "method": "script"}],
    )
    code = main(["build", str(recipe), "-r", str(tmp_path / "repo"), "-o", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 3, err
    assert err.startswith("error: every variant of 'tiny' failed") and len(err.splitlines()) == 1
    assert not (tmp_path / "repo" / "tiny").exists()
