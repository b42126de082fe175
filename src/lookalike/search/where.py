"""Filter expressions on an item's label and metadata (``--where``, ``"where"``).

Grammar (keywords are case-insensitive)::

    expr    := or
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | primary
    primary := "(" expr ")" | field ( OP value | "in" "(" value ("," value)* ")" | "exists" )
    OP      := "=" | "==" | "!=" | "<" | "<=" | ">" | ">="
    field   := NAME ("." NAME)*          label, or a metadata key (dots walk nested objects)
    value   := 'string' | "string" | number

Parsed by hand (a tokenizer and a recursive-descent parser, no ``eval``). A comparison is
true only when the field exists and holds a value of the literal's kind (a string, or a
number: JSON booleans are neither), so ``price < 20`` is false for a missing price or a price
stored as text; ``not`` negates the whole comparison. The same expression evaluates in
Python (:meth:`Where.matches`) and compiles to SQLite (:meth:`Where.sql`) with identical
results.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput

__all__ = ["Where", "WhereError", "as_where", "both", "label_where", "parse_where"]

Value = str | int | float


class WhereError(InvalidInput):
    """A filter expression that does not parse; the message names the column."""


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
    | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<op>==|!=|<=|>=|<|>|=|\(|\)|,)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "exists"}
COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {  # also milvus_filter.py's
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class _Tok:
    kind: str  # num, str, op, name, kw, end
    text: str
    col: int  # 1-based column
    value: Any = None


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            toks.append(_Tok("end", "", pos + 1))
            return toks
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise WhereError(f"unexpected character {text[pos]!r} at column {pos + 1}: {text}")
        kind = m.lastgroup or ""
        raw = m.group(kind)
        col = m.start(kind) + 1
        value: Any = None
        if kind == "num":
            value = float(raw) if re.search(r"[.eE]", raw) else int(raw)
        elif kind == "str":
            value = re.sub(r"\\(.)", r"\1", raw[1:-1])
        elif kind == "name" and raw.lower() in _KEYWORDS:
            kind, raw = "kw", raw.lower()
        elif kind == "op" and raw == "==":
            raw = "="
        toks.append(_Tok(kind, raw, col, value))
        pos = m.end()


# -- the tree ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """A parsed filter: ``op`` is and/or/not/cmp/in/exists."""

    op: str
    args: tuple[Where, ...] = ()
    field: tuple[str, ...] = ()
    cmp: str = ""
    values: tuple[Value, ...] = ()
    text: str = ""

    def matches(self, label: str | None, metadata: dict[str, Any]) -> bool:
        """Whether an item with this label and metadata passes the filter."""
        if self.op == "and":
            return all(a.matches(label, metadata) for a in self.args)
        if self.op == "or":
            return any(a.matches(label, metadata) for a in self.args)
        if self.op == "not":
            return not self.args[0].matches(label, metadata)
        found, value = _lookup(self.field, label, metadata)
        if self.op == "exists":
            return found and value is not None
        if not found:
            return False
        if self.op == "in":
            return any(_compare(value, "=", v) for v in self.values)
        return _compare(value, self.cmp, self.values[0])

    def sql(self) -> tuple[str, list[Any]]:
        """A SQLite condition on the ``items`` table (``label``, ``metadata`` JSON) and its
        parameters, selecting exactly the items :meth:`matches` accepts."""
        params: list[Any] = []
        return self._sql(params, negated=False), params

    def _sql(self, params: list[Any], negated: bool) -> str:
        if self.op in ("and", "or"):
            sep = f" {self.op.upper()} "
            return "(" + sep.join(a._sql(params, negated) for a in self.args) + ")"
        if self.op == "not":
            return f"(NOT {self.args[0]._sql(params, True)})"
        cond = self._atom_sql(params)
        # Under NOT a NULL (missing field) must read as false, not unknown; elsewhere NULL
        # already drops the row and the bare condition can use the label index.
        return f"COALESCE({cond}, 0)" if negated else cond

    def _atom_sql(self, params: list[Any]) -> str:
        if self.field == ("label",):
            column, kind = "label", None
        else:
            path = "$" + "".join('."' + p.replace('"', '\\"') + '"' for p in self.field)
            column, kind = "json_extract(metadata, ?)", "json_type(metadata, ?)"
        if self.op == "exists":
            if kind is None:
                return "(label IS NOT NULL)"
            params.append(path)
            return f"({kind} NOT IN ('null'))"
        values = list(self.values)
        parts: list[str] = []
        for is_str in (True, False):
            same = [v for v in values if isinstance(v, str) == is_str]
            if not same:
                continue
            if kind is None:
                if not is_str:
                    continue  # a label is text: never equal to a number
                guard = ""
            else:
                params.append(path)
                guard = f"{kind} {'= ' + repr('text') if is_str else 'IN (' + _NUM + ')'} AND "
            if kind is not None:
                params.append(path)
            if self.op == "in":
                params.extend(same)
                parts.append(f"({guard}{column} IN ({', '.join('?' * len(same))}))")
            else:
                params.append(same[0])
                parts.append(f"({guard}{column} {self.cmp} ?)")
        return "(" + " OR ".join(parts) + ")" if parts else "(0)"

    def __str__(self) -> str:
        return self.text


_NUM = "'integer', 'real'"


def _lookup(path: tuple[str, ...], label: str | None, metadata: Any) -> tuple[bool, Any]:
    if path == ("label",):
        return label is not None, label
    node = metadata
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _compare(value: Any, cmp: str, literal: Value) -> bool:
    if isinstance(literal, str):
        if not isinstance(value, str):
            return False
    elif isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return bool(COMPARISONS[cmp](value, literal))


# -- the parser --------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def fail(self, what: str, tok: _Tok | None = None) -> WhereError:
        tok = tok or self.peek()
        got = "the end" if tok.kind == "end" else repr(tok.text)
        return WhereError(f"expected {what} at column {tok.col} (found {got}): {self.text}")

    def is_kw(self, word: str) -> bool:
        tok = self.peek()
        return tok.kind == "kw" and tok.text == word

    def is_op(self, op: str) -> bool:
        tok = self.peek()
        return tok.kind == "op" and tok.text == op

    def parse(self) -> Where:
        if self.peek().kind == "end":
            raise self.fail("an expression")
        node = self.parse_or()
        if self.peek().kind != "end":
            raise self.fail("'and', 'or' or the end")
        return node

    def parse_or(self) -> Where:
        args = [self.parse_and()]
        while self.is_kw("or"):
            self.take()
            args.append(self.parse_and())
        return args[0] if len(args) == 1 else Where("or", tuple(args))

    def parse_and(self) -> Where:
        args = [self.parse_not()]
        while self.is_kw("and"):
            self.take()
            args.append(self.parse_not())
        return args[0] if len(args) == 1 else Where("and", tuple(args))

    def parse_not(self) -> Where:
        if self.is_kw("not"):
            self.take()
            return Where("not", (self.parse_not(),))
        return self.parse_primary()

    def parse_primary(self) -> Where:
        if self.is_op("("):
            self.take()
            node = self.parse_or()
            if not self.is_op(")"):
                raise self.fail("')'")
            self.take()
            return node
        tok = self.peek()
        if tok.kind != "name":
            raise self.fail("a field name")
        self.take()
        field = tuple(tok.text.split("."))
        if self.is_kw("exists"):
            self.take()
            return Where("exists", field=field)
        if self.is_kw("in"):
            self.take()
            if not self.is_op("("):
                raise self.fail("'(' after 'in'")
            self.take()
            values = [self.value()]
            while self.is_op(","):
                self.take()
                values.append(self.value())
            if not self.is_op(")"):
                raise self.fail("',' or ')'")
            self.take()
            return Where("in", field=field, values=tuple(values))
        op = self.peek()
        if op.kind != "op" or op.text not in COMPARISONS:
            raise self.fail("a comparison (=, !=, <, <=, >, >=, in, exists)")
        self.take()
        return Where("cmp", field=field, cmp=op.text, values=(self.value(),))

    def value(self) -> Value:
        tok = self.peek()
        if tok.kind not in ("num", "str"):
            raise self.fail("a value (a quoted string or a number)")
        self.take()
        return tok.value  # type: ignore[no-any-return]


def parse_where(text: str) -> Where:
    """Parse a filter expression; raise :class:`WhereError` (one line, with the column)."""
    node = _Parser(text).parse()
    return _with_text(node, text.strip())


def _with_text(node: Where, text: str) -> Where:
    return Where(node.op, node.args, node.field, node.cmp, node.values, text)


def as_where(where: str | Where | None) -> Where | None:
    """A filter given as text (parsed) or already parsed."""
    return parse_where(where) if isinstance(where, str) else where


def label_where(label: str) -> Where:
    """The filter ``label = <label>``."""
    return Where(
        "cmp", field=("label",), cmp="=", values=(label,), text=f"label = {json.dumps(label)}"
    )


def both(a: Where | None, b: Where | None) -> Where | None:
    """``a and b`` (either may be absent)."""
    if a is None or b is None:
        return a or b
    return Where("and", (a, b), text=f"({a.text}) and ({b.text})")
