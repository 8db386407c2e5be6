"""Run Python as an image would: with the packages the image does not ship made unimportable."""

from __future__ import annotations

import subprocess
import sys

from tests.deploy.conftest import REPO

_RUN_WITHOUT = """
import importlib.abc, sys
blocked, allowed = {blocked!r}, {allowed!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name not in allowed and any(name == b or name.startswith(b + ".") for b in blocked):
            raise ImportError(f"{{name}} is not in the {image} image")
sys.meta_path.insert(0, Block())
{body}
"""


def run_without(
    body: str, *, blocked: tuple[str, ...], allowed: tuple[str, ...], image: str
) -> subprocess.CompletedProcess[str]:
    """`body` in a fresh interpreter where the `blocked` modules (dotted prefixes), except the
    `allowed` ones, fail to import with "<module> is not in the <image> image"."""
    code = _RUN_WITHOUT.format(blocked=blocked, allowed=allowed, image=image, body=body)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
