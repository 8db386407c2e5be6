"""Session fixture: digits + minilm built by the real builder into a temporary model repository."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def example_builds(tmp_path_factory):
    """``(repository, {name: BuildResult})`` for the two bundled examples (built once per session)."""
    from examples.build import build_examples

    root = tmp_path_factory.mktemp("examples")
    repository = root / "model_repository"
    results = build_examples(repository, root / "builds", show_progress=False)
    return repository, results


@pytest.fixture(scope="session")
def example_repository(example_builds) -> Path:
    """The canonical repository holding ``digits`` and ``minilm`` (treat it as read-only)."""
    return example_builds[0]
