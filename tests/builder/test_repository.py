import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.builder.test_recipe import MINIMAL
from tritium.builder.recipe import DType, parse_recipe
from tritium.builder.repository import (
    ModelWrite,
    NewVersion,
    list_models,
    read_model,
    repository_lock,
    served_versions,
    write_model_config,
    write_models,
    write_versions,
)
from tritium.builder.triton_config import build_config, parse_pbtxt
from tritium.errors import NotFoundError, RepositoryError


def _onnx(path: Path, scale: float = 2.0) -> Path:
    node = helper.make_node("Mul", ["x", "s"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor("s", TensorProto.FLOAT, [1], [scale])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _make_config(versions):
    recipe = parse_recipe(MINIMAL)
    return build_config(
        recipe,
        name="tiny",
        platform="onnxruntime_onnx",
        versions=versions,
        output_dtypes={"y": DType.FP32},
        output_shapes={"y": ["batch", 4]},
    )


def _new(tmp_path, name, key="", parent_key=None):
    return NewVersion(_onnx(tmp_path / f"{name}.onnx"), "model.onnx", {"variant": name}, parent_key, key)


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_first_write_creates_versions_with_lineage(tmp_path):
    repo = tmp_path / "repo"
    numbers = write_versions(
        repo, "tiny", [_new(tmp_path, "a", "a"), _new(tmp_path, "b", parent_key="a")], _make_config
    )
    assert numbers == [1, 2]
    model = read_model(repo, "tiny")
    assert [v.version for v in model.versions] == [1, 2]
    lineage = json.loads((repo / "tiny" / "2" / "lineage.json").read_text())
    assert lineage["version"] == 2 and lineage["parent_version"] == 1
    assert list(model.config.version_policy.specific.versions) == [1, 2]
    assert not list(tmp_path.glob(".repo.staging-*"))


def test_versions_are_never_overwritten(tmp_path):
    repo = tmp_path / "repo"
    write_versions(repo, "tiny", [_new(tmp_path, "a")], _make_config)
    first = (repo / "tiny" / "1" / "model.onnx").read_bytes()
    assert write_versions(repo, "tiny", [_new(tmp_path, "b")], _make_config) == [2]
    assert (repo / "tiny" / "1" / "model.onnx").read_bytes() == first
    assert list(read_model(repo, "tiny").config.version_policy.specific.versions) == [1, 2]


def test_failure_before_commit_leaves_repository_untouched(tmp_path):
    repo = tmp_path / "repo"
    write_versions(repo, "tiny", [_new(tmp_path, "a")], _make_config)
    before = tree_digest(repo)

    def explode(staged):
        assert (staged / "2" / "model.onnx").is_file()  # fully staged, not yet renamed
        raise OSError("disk full")

    with pytest.raises(RepositoryError, match="disk full"):
        write_versions(repo, "tiny", [_new(tmp_path, "b")], _make_config, before_commit=explode)
    assert tree_digest(repo) == before
    assert not list(tmp_path.glob(".repo.staging-*"))


def test_invalid_model_file_is_refused_before_commit(tmp_path):
    repo = tmp_path / "repo"
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(RepositoryError, match="does not load"):
        write_versions(repo, "tiny", [NewVersion(bad, "model.onnx", {})], _make_config)
    assert not (repo / "tiny").exists()


def test_concurrent_writer_is_refused(tmp_path):
    repo = tmp_path / "repo"
    with repository_lock(repo), pytest.raises(RepositoryError, match="another build"):
        write_versions(repo, "tiny", [_new(tmp_path, "a")], _make_config)


def test_unknown_model_lists_known_ones(tmp_path):
    repo = tmp_path / "repo"
    write_versions(repo, "tiny", [_new(tmp_path, "a")], _make_config)
    assert [m.name for m in list_models(repo)] == ["tiny"]
    with pytest.raises(NotFoundError, match="models: tiny"):
        read_model(repo, "other")


def test_written_model_runs(tmp_path):
    import onnxruntime as ort

    repo = tmp_path / "repo"
    write_versions(repo, "tiny", [_new(tmp_path, "a")], _make_config)
    session = ort.InferenceSession(
        str(repo / "tiny" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    out = session.run(None, {"x": np.ones((2, 4), np.float32)})[0]
    assert np.allclose(out, 2.0)


def test_several_models_land_together_or_not_at_all(tmp_path):
    repo = tmp_path / "repo"
    write_versions(repo, "tiny", [_new(tmp_path, "a")], _make_config)
    before = tree_digest(repo)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    writes = [
        ModelWrite("tiny", [_new(tmp_path, "b")], _make_config),
        ModelWrite("tiny_other", [NewVersion(bad, "model.onnx", {})], _make_config),
    ]
    with pytest.raises(RepositoryError, match="does not load"):
        write_models(repo, writes)
    assert tree_digest(repo) == before


def test_rollback_when_a_later_model_fails_to_commit(tmp_path):
    repo = tmp_path / "repo"
    write_versions(repo, "tiny", [_new(tmp_path, "a")], _make_config)
    write_versions(repo, "second", [_new(tmp_path, "s")], _make_config)
    before = tree_digest(repo)

    def race(staged):  # another writer creates the version 'second' is about to take
        if staged.name == "second":
            (repo / "second" / "2").mkdir()

    writes = [
        ModelWrite("tiny", [_new(tmp_path, "b")], _make_config),
        ModelWrite("second", [_new(tmp_path, "t")], _make_config),
    ]
    with pytest.raises(RepositoryError, match="appeared during the build"):
        write_models(repo, writes, before_commit=race)
    (repo / "second" / "2").rmdir()
    assert tree_digest(repo) == before  # 'tiny' v2 and its new config were put back


def test_unwritable_repository_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RepositoryError, match="cannot write the model repository"):
        write_versions(blocker / "repo", "tiny", [_new(tmp_path, "a")], _make_config)


def test_served_versions_follow_the_policy():
    versions = [1, 2, 3, 4]
    assert served_versions(parse_pbtxt(""), versions) == {4}
    assert served_versions(parse_pbtxt("version_policy { latest { num_versions: 2 } }"), versions) == {3, 4}
    assert served_versions(parse_pbtxt("version_policy { all {} }"), versions) == {1, 2, 3, 4}
    assert served_versions(parse_pbtxt("version_policy { specific { versions: [1, 9] } }"), versions) == {1}


def test_corrupt_lineage_does_not_break_listing(tmp_path):
    repo = tmp_path / "repo"
    write_versions(repo, "tiny", [_new(tmp_path, "a")], _make_config)
    (repo / "tiny" / "1" / "lineage.json").write_text("{broken")
    assert "unreadable lineage.json" in read_model(repo, "tiny").versions[0].lineage["error"]


def test_a_config_change_lands_with_its_record_and_keeps_the_version_policy(tmp_path):
    repo = tmp_path / "repo"
    write_versions(repo, "tiny", [_new(tmp_path, "a"), _new(tmp_path, "b")], _make_config)
    config = read_model(repo, "tiny").config
    config.dynamic_batching.max_queue_delay_microseconds = 1234
    write_model_config(repo, "tiny", config, records={"2/tuning-x.json": b'{"changes": []}'})
    model = read_model(repo, "tiny")
    assert model.config.dynamic_batching.max_queue_delay_microseconds == 1234
    assert json.loads((repo / "tiny" / "2" / "tuning-x.json").read_text()) == {"changes": []}
    assert [v.version for v in model.versions] == [1, 2] and not list(tmp_path.glob(".repo.staging-*"))


@pytest.mark.parametrize(
    ("change", "records", "words"),
    [
        (lambda c: c.version_policy.specific.versions.append(9), {}, "changes its version policy"),
        (lambda c: None, {"../escape.json": b"{}"}, "not inside a version"),
        (lambda c: None, {"7/tuning-x.json": b"{}"}, "no such version"),
        (lambda c: None, {"1/lineage.json": b"{}"}, "the file exists"),
    ],
)
def test_a_config_change_that_would_break_something_writes_nothing(tmp_path, change, records, words):
    repo = tmp_path / "repo"
    write_versions(repo, "tiny", [_new(tmp_path, "a")], _make_config)
    before = tree_digest(repo)
    config = read_model(repo, "tiny").config
    config.max_batch_size = 3
    change(config)
    with pytest.raises(RepositoryError, match=words):
        write_model_config(repo, "tiny", config, records=records)
    assert tree_digest(repo) == before and not list(tmp_path.glob(".repo.staging-*"))
