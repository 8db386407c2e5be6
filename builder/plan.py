"""The planner: a recipe in, the ordered steps of its build out. Pure: it runs nothing.

Every variant becomes one :class:`PlannedStep` in the recipe's order, naming the artifact it
starts from. Where that is another variant (INT8 and FP16 start from the recipe's optimized FP32
graph), the step also names a fallback, the export, used when that variant is not accepted:
nothing is built on a graph the gate or the performance rule turned down. A variant's own
``parent:`` (an INT8 step on a pruned model) names that variant with no fallback: the stack the
recipe asked for is built, or the variant fails saying its parent was not accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritium.builder.artifacts import ONNX_PLATFORM
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
    explicit_parent: bool = False  # the recipe named the parent: no fallback, the variant fails without it


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
        explicit = variant.parent is not None
        if explicit:
            _check_parent(variant, index, steps, technique, where)
            parent, fallback = variant.parent, None
        elif technique.parent is Parent.SOURCE:
            parent, fallback = SOURCE, None
        elif technique.parent is Parent.FP32 and first_fp32 is not None:
            parent, fallback = first_fp32, EXPORT
        else:
            parent, fallback = EXPORT, None
        steps.append(
            PlannedStep(
                name,
                variant.kind,
                variant,
                parent,
                fallback,
                technique.cannot_apply(variant, recipe),
                explicit_parent=explicit,
            )
        )
        if variant.kind == "onnx-fp32" and first_fp32 is None:
            first_fp32 = name
    first = "export-onnx" if recipe.source.kind != "onnx" else "check-onnx"
    holds_out = any(TECHNIQUES[s.kind].holds_out(s.variant) for s in steps if not s.blocked)
    return Plan(first, tuple(steps), holds_out)


def _check_parent(variant, index: int, before: list[PlannedStep], technique, where: str) -> None:
    """A ``parent:`` must name an earlier variant that makes an ONNX model, for a technique that starts
    from one (techniques that fine-tune start from the PyTorch source)."""
    field = f"{where}: 'variants[{index}].parent'"
    if technique.parent is Parent.SOURCE:
        raise RecipeError(
            f"{field}: {variant.kind} starts from the PyTorch source model, not from another variant",
            hint="remove 'parent', or put an ONNX technique (onnx-int8-static, onnx-int8-dynamic, onnx-fp16) on it",
        )
    names = {s.name: s for s in before}
    if variant.parent not in names:
        raise RecipeError(
            f"{field}: {variant.parent!r} is not a variant listed before this one "
            f"(listed before: {sorted(names) or 'none'})",
            hint="name an earlier variant, by its 'name' or its default name",
        )
    # every technique that starts from another model reads an ONNX file (OpenVINO converts one)
    if TECHNIQUES[names[variant.parent].kind].platform != ONNX_PLATFORM:
        raise RecipeError(
            f"{field}: {variant.parent!r} is a {names[variant.parent].kind} model, not ONNX",
            hint="stack ONNX techniques on a variant that makes an ONNX model",
        )


def plan_recipe(loaded: LoadedRecipe) -> Plan:
    return plan_build(loaded.recipe, loaded.path.name)
