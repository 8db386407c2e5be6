"""Build the bundled examples (digits, minilm) into a model repository.

`python -m examples.build [--repository model_repository] [--only digits]` trains the digits CNN
when its artifacts are missing, then runs `tritium build` on each example recipe.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

EXAMPLES = Path(__file__).resolve().parent
NAMES = ("digits", "minilm")


def ensure_digits_artifacts(console: Console | None = None) -> Path:
    artifacts = EXAMPLES / "digits" / "artifacts"
    if not all((artifacts / f).is_file() for f in ("digits.pt", "val.npz", "calib.npz", "train.npz")):
        import sys

        sys.path.insert(0, str(EXAMPLES / "digits"))
        try:
            from digits_model import train
        finally:
            sys.path.remove(str(EXAMPLES / "digits"))
        accuracy = train(artifacts)
        if console:
            console.log(f"trained the digits CNN: test accuracy {accuracy:.4f}")
    return artifacts


def build_examples(
    repository: Path,
    output_root: Path,
    names: tuple[str, ...] = NAMES,
    *,
    show_progress: bool = True,
    console=None,
):
    from tritium.builder.pipeline import build_recipe

    results = {}
    if "digits" in names:
        ensure_digits_artifacts(console)
    for name in names:
        results[name] = build_recipe(
            EXAMPLES / name / "recipe.yaml",
            repository=repository,
            output_dir=output_root / name,
            show_progress=show_progress,
            console=console,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--output", type=Path, default=Path("builds/examples"))
    parser.add_argument("--only", choices=NAMES, action="append")
    args = parser.parse_args()
    console = Console(stderr=True, log_path=False)
    results = build_examples(args.repository, args.output, tuple(args.only or NAMES), console=console)
    for name, result in results.items():
        console.print(f"[bold]{name}[/]: written {result.written}; report {result.reports['markdown']}")


if __name__ == "__main__":
    main()
