"""The planner: a recipe in, the ordered steps of its build out. Pure: it runs nothing.

Every variant becomes one :class:`PlannedStep` in the recipe's order, naming the artifact it
starts from. Where that is another variant (INT8 and FP16 start from the recipe's optimized FP32
graph), the step also names a fallback, the export, used when that variant is not accepted:
nothing is built on a graph the gate or the performance rule turned down.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritium.builder.recipe import LoadedRecipe, Recipe, variant_name
from tritium.builder.steps import TECHNIQUES, Parent
from tritium.builder.steps.export import EXPORT
from tritium.errors import RecipeError

SOURCE = "source"


@dataclass(frozen=True)
class PlannedStep:
    name: str  # the variant's name
    kind: str  # its technique
    variant: object  # the recipe's spec for it
    parent: str  # "export", "source", or the name of a variant planned before it
    fallback: str | None = None  # used instead of ``parent`` when that variant is not accepted
    blocked: str | None = None  # why it cannot be built: it fails with this reason, the rest build


@dataclass(frozen=True)
class Plan:
    first: str  # the export step: "export-onnx" (PyTorch source) or "check-onnx" (ONNX source)
    steps: tuple[PlannedStep, ...]
    holds_out: bool = False  # a step searches on a split of the validation set the gate does not score


def plan_build(recipe: Recipe, where: str = "recipe") -> Plan:
    """The steps of ``recipe``'s build; a variant the recipe cannot ask for raises a RecipeError."""
    steps: list[PlannedStep] = []
    first_fp32: str | None = None
    for index, variant in enumerate(recipe.variants):
        technique = TECHNIQUES[variant.kind]
        error = technique.recipe_error(variant, recipe)
        if error:
            raise RecipeError(
                f"{where}: 'variants[{index}]': {error}",
                hint="remove the variant or change the recipe's source",
            )
        name = variant_name(variant)
        if technique.parent is Parent.SOURCE:
            parent, fallback = SOURCE, None
        elif technique.parent is Parent.FP32 and first_fp32 is not None:
            parent, fallback = first_fp32, EXPORT
        else:
            parent, fallback = EXPORT, None
        steps.append(
            PlannedStep(
                name, variant.kind, variant, parent, fallback, technique.cannot_apply(variant, recipe)
            )
        )
        if variant.kind == "onnx-fp32" and first_fp32 is None:
            first_fp32 = name
    first = "export-onnx" if recipe.source.kind != "onnx" else "check-onnx"
    holds_out = any(TECHNIQUES[s.kind].holds_out(s.variant) for s in steps if not s.blocked)
    return Plan(first, tuple(steps), holds_out)


def plan_recipe(loaded: LoadedRecipe) -> Plan:
    return plan_build(loaded.recipe, loaded.path.name)
