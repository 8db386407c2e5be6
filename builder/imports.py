"""Import ``package.module:function`` references named in recipes."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path

from tritium.errors import UserInputError


def import_callable(
    ref: str, *, what: str, search_dirs: tuple[Path, ...] = (), error: type[UserInputError] = UserInputError
) -> Callable:
    """Import ``module:function``, looking in ``search_dirs`` (e.g. the recipe's folder) first."""
    module_name, _, attr = ref.partition(":")
    added = [str(d) for d in search_dirs if str(d) not in sys.path]
    sys.path[:0] = added
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise error(
            f"{what} {ref!r}: module {exc.name!r} cannot be imported",
            hint="install the package or run from the folder that contains it",
        ) from None
    except Exception as exc:  # the user's module raised while importing
        raise error(
            f"{what} {ref!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        for entry in added:
            sys.path.remove(entry)
    try:
        func = getattr(module, attr)
    except AttributeError:
        raise error(f"{what} {ref!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(func):
        raise error(f"{what} {ref!r} is not callable")
    return func
