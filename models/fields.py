"""Dataclass fields that carry their documentation and bounds, for help texts, configs and checks."""

from __future__ import annotations

import dataclasses
import operator
from typing import Any

BOUNDS = {"least": (operator.ge, "at least"), "above": (operator.gt, "above"),
          "most": (operator.le, "at most"), "below": (operator.lt, "below")}
"""Metadata keys of `documented` that bound a number, with the test and the words of each."""


def documented(default: Any, doc: str, **metadata: Any) -> Any:
    """A dataclass field with `default`, its one-sentence `doc` and any other metadata: bounds
    (least, above, most, below) and choices are checked by `field_problem`."""
    return dataclasses.field(default=default, metadata={"doc": doc, **metadata})


def field_doc(f: dataclasses.Field) -> str:
    """The documentation of a field made with `documented` ('' for any other field)."""
    return f.metadata.get("doc", "")


def option(name: str) -> str:
    """The command-line option of a field: --name-with-dashes."""
    return "--" + name.replace("_", "-")


def field_problem(config: Any, f: dataclasses.Field) -> str | None:
    """Why the value of field `f` of `config` is outside its choices or bounds, or None (a None
    value is never checked: it means "not set")."""
    value, meta = getattr(config, f.name), f.metadata
    if value is None:
        return None
    if meta.get("choices") is not None and value not in meta["choices"]:
        return f"{f.name} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}"
    bounds = [(test, word, meta[key]) for key, (test, word) in BOUNDS.items()
              if meta.get(key) is not None]
    if bounds and (isinstance(value, bool) or not isinstance(value, (int, float))
                   or not all(test(value, bound) for test, _, bound in bounds)):
        wanted = " and ".join(f"{word} {bound:g}" if isinstance(bound, float) else f"{word} {bound}"
                              for _, word, bound in bounds)
        return f"{f.name} must be {wanted}, got {value!r}"
    return None
