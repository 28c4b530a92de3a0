"""From pydantic's validation errors to `ParameterProblem`s that name the field, the value and what is expected.

pydantic reports a failed model as a list of errors, each with a location, an error type and the
input. The runbook shows each as one `ParameterProblem`: the dotted field ("vault.bucket"), the
value as the user wrote it (never the Object Lock token), and the expectation in plain words,
taken from the single-value check's own text where there is one (`param_checks`).

When some fields fail, pydantic never reaches the rules between fields. `known_values` gives those
rules the values that are valid on their own, so one round of edits can fix every problem.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from difflib import get_close_matches
from functools import cache
from typing import Annotated, Any, get_args

from pydantic import BaseModel, TypeAdapter, ValidationError

from runbook_lib.errors import ParameterProblem

__all__ = ["MISSING", "known_values", "problems_from"]


class _Missing:
    """Stands in for the value of a parameter that was not given at all."""

    def __repr__(self) -> str:
        return "nothing"


MISSING: Any = _Missing()
_UNKNOWN = object()


def problems_from(error: ValidationError, root: type[BaseModel]) -> list[ParameterProblem]:
    """Return one ParameterProblem per pydantic error of `root`'s validation, in pydantic's order."""
    return [_problem_from(item, root) for item in error.errors(include_url=False)]


def known_values(root: type[BaseModel], data: Mapping[str, Any], paths: Iterable[str]) -> dict[str, object]:
    """Return the validated value at each dotted path of raw `data` that is valid on its own (or defaulted)."""
    values = {path: _valid_leaf(root, data, path) for path in paths}
    return {path: value for path, value in values.items() if value is not _UNKNOWN}


# --------------------------------------------------------------------------- one error


def _problem_from(error: Mapping[str, Any], root: type[BaseModel]) -> ParameterProblem:
    """Return the ParameterProblem for one pydantic error, named by its dotted path."""
    # "[key]" marks an invalid dict key (a tag key); the path up to it already names the key.
    field = ".".join(str(part) for part in error["loc"] if part != "[key]")
    return ParameterProblem(field, _shown_value(field, error), _expected(error, root))


def _expected(error: Mapping[str, Any], root: type[BaseModel]) -> str:
    """Return the plain-words expectation for one pydantic error."""
    kind, location = error["type"], error["loc"]
    if kind == "parameter":
        return str(error["ctx"]["expected"])
    if kind == "extra_forbidden":
        parent = _model_at(root, location[:-1])
        allowed = ", ".join(parent.model_fields) if parent else ""
        return f"unknown parameter; allowed: {allowed}"
    if kind == "missing":
        parent = _model_at(root, location[:-1])
        field = parent.model_fields.get(str(location[-1])) if parent else None
        what = f" ({field.description})" if field and field.description else ""
        return f"a value: this parameter is required{what}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        section = _model_at(root, location)
        if section is None:
            return "a mapping of tag keys to values ({} for none)"
        return f"a mapping with the keys: {', '.join(section.model_fields)}"
    return str(error["msg"])


def _model_at(root: type[BaseModel], location: tuple[str | int, ...]) -> type[BaseModel] | None:
    """Return the section model found at a location, or None where there is none (tags)."""
    model = root
    for name in location:
        field = model.model_fields.get(str(name))
        section = _section_of(field.annotation) if field is not None else None
        if section is None:
            return None
        model = section
    return model


def _section_of(annotation: Any) -> type[BaseModel] | None:
    """Return the section model an annotation names, also inside "Section | None" (an optional section)."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _may_hold_token(field: str) -> bool:
    """Return whether a field is the Object Lock token or a misspelling of it, such as "lock_tokn"."""
    name = field.rsplit(".", 1)[-1].lower()
    return "token" in name or bool(get_close_matches(name, ["object_lock_token"], cutoff=0.6))


def _shown_value(field: str, error: Mapping[str, Any]) -> object:
    """Return the value to show for a problem: never the token, and dates as ISO text."""
    if error["type"] == "missing":
        return MISSING
    context = error.get("ctx") or {}
    value = context.get("shown", error["input"])
    if _may_hold_token(field) and value not in (None, ""):
        return "***"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


# --------------------------------------------------------------------------- values valid on their own


@cache
def _leaf_adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    """Return a validator for one field of a model on its own, with the field's own checks."""
    field = model.model_fields[name]
    annotation: Any = field.annotation
    if field.metadata:
        annotation = Annotated[(annotation, *field.metadata)]
    return TypeAdapter(annotation)


def _valid_leaf(root: type[BaseModel], data: Mapping[str, Any], path: str) -> object:
    """Return the validated value at a dotted path of raw data, its default, or _UNKNOWN if invalid."""
    model = root
    node: object = data
    names = path.split(".")
    for depth, name in enumerate(names):
        if not isinstance(node, dict):
            return _UNKNOWN
        field = model.model_fields[name]
        if name not in node:
            if field.is_required():
                return _UNKNOWN
            default: object = field.get_default(call_default_factory=True)
            for rest in names[depth + 1 :]:
                default = getattr(default, rest)
            return default
        if depth == len(names) - 1:
            try:
                return _leaf_adapter(model, name).validate_python(node[name])
            except ValidationError:
                return _UNKNOWN
        node = node[name]
        model = field.annotation  # type: ignore[assignment]
    return _UNKNOWN
