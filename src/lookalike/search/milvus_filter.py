"""Filter expressions (:class:`~lookalike.search.where.Where`) compiled to Milvus boolean
expressions over the fields ``label`` (VARCHAR, "" for no label) and ``meta`` (JSON, the
item's metadata), selecting exactly the items :meth:`Where.matches` accepts.

Written for what Milvus 2.3/2.4 and Milvus Lite 2.4 evaluate alike (measured on Lite):

* ``meta["a"] == v`` and ``<``, ``<=``, ``>``, ``>=`` hold only when the key is there and
  its value is of the literal's kind (numbers: ints and floats together, never booleans;
  strings), as a ``Where`` comparison; ``!=`` and ``not in`` hold for everything else too,
  missing keys and other kinds included, which is exactly ``Where``'s ``not (a = v)``. So
  ``a != v`` compiles to ``(a < v or a > v)``.
* Milvus Lite evaluates no ``not (...)`` and no ``exists``, so ``not`` is pushed down to the
  comparisons (De Morgan) and never written out.
* In a string literal only ``\\`` and ``\\"`` are escapes; other characters go in as they
  are (tabs too), but a line break cannot.

Raises :class:`MilvusFilterError` (an ``InvalidInput``) for what Milvus cannot express
exactly, so that the caller can filter another way:

* ``exists`` on a metadata field (either way round): Milvus cannot tell a null from a
  value, nor test for a key in general;
* ``not`` over a metadata ``!=``, ``<``, ``<=``, ``>`` or ``>=`` (true for a missing key or a
  value of another kind: no Milvus expression without ``not`` holds for a missing key and
  not for most numbers); ``not`` over ``=`` and ``in`` is fine, and anything on ``label``;
* a string literal with a line break (``\\n``, ``\\r``), a number that is not finite or
  whose size reaches 2**53 (Milvus compares those through doubles or cannot read them),
  or a metadata key that is all digits (Milvus would index a list with it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import InvalidInput
from .where import COMPARISONS, Value, Where, label_where

__all__ = ["MilvusFilterError", "label_expr", "to_milvus"]

# Constant truth values (a label is never null in Milvus: "" stands for none).
TRUE = '(label == "" or label != "")'
FALSE = '(label == "" and label != "")'
_EXACT = 2**53
_MILVUS_OP = {"=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_NEGATED = {"=": "!=", "!=": "=", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}


class MilvusFilterError(InvalidInput):
    """A filter Milvus cannot evaluate exactly as ``Where.matches`` does (see the module)."""


def to_milvus(where: Where) -> str:
    """The Milvus expression selecting the items ``where`` accepts."""
    return _compile(where, negated=False)


def label_expr(label: str) -> str:
    """The Milvus expression of ``label = <label>``."""
    return to_milvus(label_where(label))


def _compile(node: Where, negated: bool) -> str:
    if node.op == "not":
        return _compile(node.args[0], not negated)
    if node.op in ("and", "or"):
        joiner = node.op if not negated else {"and": "or", "or": "and"}[node.op]
        return _join(joiner, [_compile(a, negated) for a in node.args])
    if node.field == ("label",):
        return _label(node, negated)
    return _meta(node, negated)


def _join(joiner: str, parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else "(" + f" {joiner} ".join(parts) + ")"


# -- label: a VARCHAR, "" for none --------------------------------------------------------


def _label(node: Where, negated: bool) -> str:
    """``label`` is there unless it is ""; ``not`` holds for "" and the opposite test."""
    if node.op == "exists":
        return 'label == ""' if negated else 'label != ""'
    texts = [v for v in node.values if isinstance(v, str) and v != ""]
    if node.op == "in":
        if not texts:
            return TRUE if negated else FALSE
        listed = ", ".join(_string(v) for v in dict.fromkeys(texts))
        return f"label not in [{listed}]" if negated else f"label in [{listed}]"
    value = node.values[0]
    if not isinstance(value, str):  # a label is text: never equal to a number
        return TRUE if negated else FALSE
    cmp = _NEGATED[node.cmp] if negated else node.cmp
    test = f"label {_MILVUS_OP[cmp]} {_string(value)}"
    none_passes = COMPARISONS[cmp]("", value)  # what the bare test says of "" (no label)
    if negated:  # no label passes: add it unless the test already does
        return test if none_passes else f'(label == "" or {test})'
    return f'(label != "" and {test})' if none_passes else test


# -- metadata: JSON ---------------------------------------------------------------------


def _meta(node: Where, negated: bool) -> str:
    column = "meta" + "".join(f"[{_key(p)}]" for p in node.field)
    name = ".".join(node.field)
    if node.op == "exists":
        raise MilvusFilterError(
            f"Milvus cannot test whether metadata field {name} exists (and is not null)"
        )
    values = [_literal(v) for v in node.values]
    if node.op == "in":
        groups = _in_groups(node.values)
        if negated:
            return _join("and", [f"{column} not in [{g}]" for g in groups])
        return _join("or", [f"{column} in [{g}]" for g in groups])
    literal = values[0]
    if negated:
        if node.cmp != "=":
            raise MilvusFilterError(
                f"Milvus cannot express 'not {name} {node.cmp} ...' exactly (it must hold for"
                " a missing field or a value of another kind); only 'not ... =' and "
                "'not ... in' can be negated on metadata"
            )
        return f"{column} != {literal}"
    if node.cmp == "!=":
        return f"({column} < {literal} or {column} > {literal})"
    return f"{column} {_MILVUS_OP[node.cmp]} {literal}"


def _in_groups(values: Sequence[Value]) -> list[str]:
    """``in`` lists Milvus takes: one kind each (strings; ints; or floats, ints made floats)."""
    texts = [_string(v) for v in values if isinstance(v, str)]
    numbers = [v for v in values if not isinstance(v, str)]
    for v in numbers:
        _literal(v)  # checks range
    groups = []
    if texts:
        groups.append(", ".join(dict.fromkeys(texts)))
    if numbers:
        if all(isinstance(v, int) for v in numbers):
            groups.append(", ".join(dict.fromkeys(str(v) for v in numbers)))
        else:
            groups.append(", ".join(dict.fromkeys(repr(float(v)) for v in numbers)))
    return groups


def _literal(value: Value) -> str:
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MilvusFilterError(f"unsupported filter value {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise MilvusFilterError(f"Milvus cannot compare with {value!r}")
    if abs(value) >= _EXACT:
        raise MilvusFilterError(
            f"Milvus cannot compare with {value!r} exactly (numbers must be under 2**53)"
        )
    return str(value) if isinstance(value, int) else repr(value)


def _string(text: str) -> str:
    """A Milvus string literal: ``\\`` and ``"`` escaped, nothing else (no line breaks)."""
    if "\n" in text or "\r" in text:
        raise MilvusFilterError(f"Milvus cannot take a line break in a string: {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _key(part: str) -> str:
    if part.isdigit():
        raise MilvusFilterError(f"Milvus would read metadata key {part!r} as a list index")
    return _string(part)
