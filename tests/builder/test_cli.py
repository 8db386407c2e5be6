"""`tritium build` / `tritium models list|show` through the real CLI entry point."""

import json

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
