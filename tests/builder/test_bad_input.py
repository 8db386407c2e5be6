"""Each bad input ends the build with one clear line, a non-zero exit and an untouched repository."""

import numpy as np
import pytest
import yaml

from tests.builder.tiny_models import write_tiny_project
from tritium.cli import main


def _run(capsys, recipe, repo):
    code = main(
        ["build", str(recipe), "--repository", str(repo), "--output", str(recipe.parent / "out"), "--quiet"]
    )
    err = capsys.readouterr().err.strip()
    return code, err


def _edit(recipe, **changes):
    data = yaml.safe_load(recipe.read_text())
    data.update(changes)
    recipe.write_text(yaml.safe_dump(data))
    return recipe


@pytest.fixture
def project(tmp_path):
    return write_tiny_project(tmp_path / "p")


def _assert_one_line_error(code, err, expected_code, *fragments):
    assert code == expected_code, err
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


def test_missing_model_file(capsys, project, tmp_path):
    _edit(project, source={"kind": "onnx", "path": "absent.onnx"}, variants=[{"kind": "onnx-fp32"}])
    _assert_one_line_error(
        *_run(capsys, project, tmp_path / "repo"), 2, "ONNX file", "absent.onnx", "does not exist"
    )
    assert not (tmp_path / "repo").exists()


def test_unreadable_model_file(capsys, project, tmp_path):
    (project.parent / "garbage.onnx").write_bytes(b"\x00\x01 not onnx")
    _edit(project, source={"kind": "onnx", "path": "garbage.onnx"}, variants=[{"kind": "onnx-fp32"}])
    _assert_one_line_error(*_run(capsys, project, tmp_path / "repo"), 2, "is not a valid ONNX model")


def test_missing_state_dict(capsys, project, tmp_path):
    _edit(
        project,
        source={
            "kind": "pytorch",
            "factory": "tests.builder.tiny_models:tiny_classifier",
            "state_dict": "w.pt",
        },
    )
    _assert_one_line_error(
        *_run(capsys, project, tmp_path / "repo"), 2, "state dict", "w.pt", "does not exist"
    )


def test_factory_that_does_not_import(capsys, project, tmp_path):
    _edit(project, source={"kind": "pytorch", "factory": "no_such_package.models:build"})
    _assert_one_line_error(
        *_run(capsys, project, tmp_path / "repo"), 2, "no_such_package", "cannot be imported"
    )


def test_factory_that_raises(capsys, project, tmp_path):
    _edit(project, source={"kind": "pytorch", "factory": "tests.builder.tiny_models:broken_factory"})
    _assert_one_line_error(
        *_run(capsys, project, tmp_path / "repo"), 2, "raised RuntimeError", "weights server"
    )


def test_input_spec_that_does_not_match_the_model(capsys, project, tmp_path):
    data = np.load(project.parent / "val.npz")
    np.savez(project.parent / "val.npz", x=np.zeros((64, 12), np.float32), labels=data["labels"][:64])
    _edit(project, inputs=[{"name": "x", "dtype": "FP32", "shape": ["batch", 12]}])
    code, err = _run(capsys, project, tmp_path / "repo")
    _assert_one_line_error(
        code, err, 2, "the model rejects inputs shaped like the recipe's 'inputs'", "x[2, 12]"
    )


def test_unsupported_operator_at_export(capsys, project, tmp_path):
    _edit(
        project,
        source={"kind": "pytorch", "factory": "tests.builder.tiny_models:uses_fft"},
        validation={"dataset": {"kind": "npz", "path": "val.npz", "labels": None}, "metric": "cosine"},
    )
    _assert_one_line_error(*_run(capsys, project, tmp_path / "repo"), 3, "operator", "fft", "not supported")
    assert not (tmp_path / "repo").exists()


def test_export_that_silently_fixes_the_batch_dim(capsys, project, tmp_path):
    _edit(
        project,
        source={"kind": "pytorch", "factory": "tests.builder.tiny_models:fixes_batch"},
        validation={"dataset": {"kind": "npz", "path": "val.npz", "labels": None}, "metric": "cosine"},
    )
    code, err = _run(capsys, project, tmp_path / "repo")
    _assert_one_line_error(code, err, 3, "the ONNX export fails at batch=1", "fixed a dimension")


def test_calibration_set_of_the_wrong_shape(capsys, project, tmp_path):
    np.savez(project.parent / "calib.npz", x=np.zeros((64, 3, 16), np.float32))
    code, err = _run(capsys, project, tmp_path / "repo")
    _assert_one_line_error(code, err, 2, "calib.npz", "input 'x' has shape [64, 3, 16]", "expected rank 2")
    assert not (tmp_path / "repo").exists()


def test_budget_no_variant_meets(capsys, project, tmp_path):
    _edit(
        project,
        validation={"dataset": {"kind": "npz", "path": "val.npz", "labels": None}, "metric": "max_abs_error"},
        budget=0.0,
        variants=[{"kind": "onnx-int8-dynamic"}, {"kind": "onnx-fp16"}],
    )
    code, err = _run(capsys, project, tmp_path / "repo")
    _assert_one_line_error(
        code, err, 4, "no variant of 'tiny' met the budget", "int8-dynamic: rejected", "fp16: rejected"
    )
    assert not (tmp_path / "repo").exists()


def test_recipe_with_an_unknown_field(capsys, project, tmp_path):
    _edit(project, triton={"max_batch_size": 8, "max_queue_delay": 100})
    _assert_one_line_error(
        *_run(capsys, project, tmp_path / "repo"), 2, "unknown field 'triton.max_queue_delay'"
    )


def test_torchscript_variant_needs_a_torch_source(capsys, project, tmp_path):
    (project.parent / "m.onnx").write_bytes(b"")
    _edit(project, source={"kind": "onnx", "path": "m.onnx"}, variants=[{"kind": "torchscript"}])
    _assert_one_line_error(
        *_run(capsys, project, tmp_path / "repo"), 2, "torchscript variant needs a PyTorch source"
    )


def test_state_dict_that_is_not_a_dict(capsys, project, tmp_path):
    import torch

    torch.save(torch.zeros(3), project.parent / "w.pt")
    _edit(
        project,
        source={
            "kind": "pytorch",
            "factory": "tests.builder.tiny_models:tiny_classifier",
            "state_dict": "w.pt",
        },
    )
    _assert_one_line_error(
        *_run(capsys, project, tmp_path / "repo"), 2, "state dict", "does not fit the factory's model"
    )


def test_unwritable_repository(capsys, project, tmp_path):
    (tmp_path / "blocker").write_text("a file, not a folder")
    code, err = _run(capsys, project, tmp_path / "blocker" / "repo")
    _assert_one_line_error(code, err, 5, "cannot write the model repository", "nothing was changed")
