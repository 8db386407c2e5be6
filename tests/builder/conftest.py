"""The small digits CNN built once per session with every pruning and distillation variant
(tests/builder/test_pruning.py and test_distill.py read it)."""

from __future__ import annotations

import pytest

from tests.builder.tiny_models import write_cnn_project


@pytest.fixture(scope="session")
def cnn_build(tmp_path_factory):
    """``(root, BuildResult, {variant name: VariantResult})``; the repository is ``root / "repo"``."""
    from tritium.builder.pipeline import build_recipe

    root = tmp_path_factory.mktemp("prune")
    result = build_recipe(
        write_cnn_project(root / "p"), repository=root / "repo", output_dir=root / "out", show_progress=False
    )
    return root, result, {v.name: v for v in result.variants}
