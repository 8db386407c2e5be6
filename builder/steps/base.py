"""The one interface every build technique implements, and what a technique is given to work with.

A technique is a module under ``builder/steps/`` holding one :class:`Technique` subclass, registered
in ``builder/steps/__init__.py`` under its recipe ``kind``. The planner asks it, without running
anything, where it starts from (:attr:`Technique.parent`) and whether it can apply to a recipe; the
pipeline then calls :meth:`Technique.produce` with the parent artifact and the build's services
(:class:`~tritium.builder.context.BuildContext`), and gates whatever comes back like any variant.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, ClassVar

from tritium.builder.artifacts import ONNX_PLATFORM, Artifact
from tritium.builder.recipe import Recipe

if TYPE_CHECKING:
    from tritium.builder.context import BuildContext


class Parent(str, Enum):
    """Where a technique starts from."""

    EXPORT = "export"  # the verified ONNX export (or the normalized ONNX source)
    FP32 = "fp32"  # the recipe's first onnx-fp32 variant listed before it, when accepted; else the export
    SOURCE = "source"  # the PyTorch model itself (tracing, fine-tuning)


@dataclass(frozen=True)
class Job:
    """One planned variant, ready to produce: its spec, its name and what it starts from."""

    name: str
    variant: object  # the recipe's variant spec (a pydantic model of this technique's kind)
    parent: Artifact | None  # None: the source model (Parent.SOURCE)


class Technique(ABC):
    kind: ClassVar[str]
    parent: ClassVar[Parent] = Parent.FP32
    platform: ClassVar[str] = ONNX_PLATFORM

    def recipe_error(self, variant, recipe: Recipe) -> str | None:
        """Why the recipe itself is wrong to ask for this variant (the build stops before it starts)."""
        return None

    def cannot_apply(self, variant, recipe: Recipe) -> str | None:
        """Why this variant cannot be built from this recipe (it fails; the other variants build)."""
        return None

    def holds_out(self, variant) -> bool:
        """Whether this variant searches on part of the validation set, which the gate must not score."""
        return False

    @abstractmethod
    def produce(self, job: Job, ctx: BuildContext) -> Artifact:
        """Make the variant's model file in the build's work folder; raise a TritiumError when it cannot."""
