"""A JSON Schema compiled into column-wise checks: an Arrow schema its events' JSON is parsed into (once per type
per batch, by Arrow's multi-threaded JSON reader, which rejects a value of the wrong JSON type), and Arrow/numpy
checks over the parsed columns for the rest (required keys, enums, lengths, patterns, formats, bounds, item
counts, each array item).

A row breaking a check gets a *token*: ``"<rule>"``, or ``"[<i>]<rule>"`` for item ``i`` of an array; the first
broken check in the order of the per-event reference (fastjsonschema's draft-07 code) is the row's. ``"X"``
(:data:`REFERENCE`) marks a row the columns cannot judge exactly: the reference does.

The subset compiled (what the catalog uses, and a little more): a root of ``type: object`` with ``required``,
``properties`` and ``additionalProperties: true``; below it a single ``type`` (string, number, integer, boolean,
object, array) or an ``enum`` of strings, ``minLength``/``maxLength``, ``pattern`` (a regex subset Python's ``re``
and RE2 read alike on ASCII text), ``format`` ``uuid`` and ``date``, ``minimum``/``maximum``/
``exclusiveMinimum``/``exclusiveMaximum``, ``minItems``/``maxItems``, ``items`` (one schema of scalars), nested
objects (``properties``, ``required``). Annotations are ignored. Anything else raises :class:`UnsupportedSchema`
(that type is validated per event).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from fastjsonschema.draft07 import CodeGeneratorDraft07

__all__ = ["FORMATS", "REFERENCE", "UNREADABLE", "UUID_PATTERN", "ColumnChecks", "Rule", "UnsupportedSchema"]

#: RFC 9562 textual form, any case (the same as fastjsonschema's draft 2019-09 ``uuid`` format).
UUID_PATTERN = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\Z"
#: The formats added to fastjsonschema's (name -> Python regex), in both validators.
FORMATS = {"uuid": UUID_PATTERN}
#: The token of a row the column checks cannot judge exactly.
REFERENCE = "X"
#: Raw text the Arrow reader and orjson may read differently, or that is not one line: a NaN or infinity
#: literal, a number past a double or with 19 digits (orjson reads a float past 64 bits), a line break, or any
#: ``\u`` escape (an escaped key would dodge the ``null`` test below). Over-approximated: matched inside strings
#: too, which only sends the row to the reference.
UNREADABLE = (r"[:,\[]\s*[-+]?(?i:nan|inf)|[:,\[]\s*-?[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]{3}|[:,\[]\s*-?[0-9]{19}"
              r"|[\n\r]|\\u")
#: fastjsonschema's order of keywords (draft-04's, then draft-06's and draft-07's additions).
KEYWORD_ORDER = (
    "type", "enum", "allOf", "anyOf", "oneOf", "not", "minLength", "maxLength", "pattern", "format", "minimum",
    "maximum", "multipleOf", "minItems", "maxItems", "uniqueItems", "items", "minProperties", "maxProperties",
    "required", "dependencies", "properties", "patternProperties", "additionalProperties", "exclusiveMinimum",
    "exclusiveMaximum", "propertyNames", "contains", "const", "if", "contentEncoding", "contentMediaType",
)
_SCALAR_KEYWORDS = frozenset({"type", "enum", "minLength", "maxLength", "pattern", "format", "minimum", "maximum",
                              "exclusiveMinimum", "exclusiveMaximum"})
_SUPPORTED = _SCALAR_KEYWORDS | {"minItems", "maxItems", "items", "required", "properties", "additionalProperties"}
_UNSUPPORTED = (frozenset(KEYWORD_ORDER) - _SUPPORTED) | {"$ref", "$id", "id", "$defs", "definitions"}
_KEY = re.compile(r"[A-Za-z0-9_\-]+\Z")
_BOUND_LIMIT = 2**53  # bounds a double holds exactly, so a double compares with them as Python does
_KNOWN_FORMATS = frozenset(CodeGeneratorDraft07.FORMAT_REGEXS) | {"regex"}
_BOUND_OPS = {"minimum": (np.less, math.ceil), "maximum": (np.greater, math.floor),
              "exclusiveMinimum": (np.less_equal, math.floor), "exclusiveMaximum": (np.greater_equal, math.ceil)}
_SCALAR_TYPES = {"string": pa.string(), "number": pa.float64(), "integer": pa.int64(), "boolean": pa.bool_()}

Path = tuple[str | None, ...]


class UnsupportedSchema(ValueError):
    """The schema uses something outside the compiled subset."""


@dataclass(frozen=True)
class Rule:
    """One check: where (object keys from the root; ``None`` for an array's item, whose index the token gives),
    which keyword, and the keyword's value in the schema."""

    path: Path
    keyword: str
    expected: Any


class Parsed:
    """The parsed rows the checks read, with what their sources computed from them (each source runs once)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.num_rows = table.num_rows
        self.memo: dict[Callable, tuple[pa.Array, np.ndarray]] = {}


#: Where a check reads: from the parsed rows, the values (one per row, or one per item) and where each is present.
Source = Callable[[Parsed], tuple[pa.Array, np.ndarray]]
#: One check over the parsed rows: which break it, and their token (one for all, or one per row).
Check = Callable[[Parsed], tuple[np.ndarray, "str | np.ndarray"]]


class ColumnChecks:
    """The column checks of one schema: the Arrow schema its events are parsed into, the keys read (at any depth:
    the reader reads a ``null`` as absent, so a row with one must go to the reference), and, per parsed row, the
    first broken check."""

    def __init__(self, schema: Any, formats: dict[str, str]) -> None:
        self.formats = formats
        self.rules: list[Rule] = []
        self.keys: set[str] = set()
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise UnsupportedSchema("a root that is not of type object")
        fields, self._checks = self._object(
            schema, (), _memoized(lambda rows: (None, np.ones(rows.num_rows, dtype=bool))), root=True)
        self.arrow_schema = pa.schema(fields)

    def tokens(self, parsed: pa.Table) -> np.ndarray:
        """Per parsed row: ``None`` (valid) or the token of its first broken check."""
        tokens = np.full(parsed.num_rows, None, dtype=object)
        open_rows = np.ones(parsed.num_rows, dtype=bool)
        rows = Parsed(parsed)
        for check in self._checks:
            broken, token = check(rows)
            hit = broken & open_rows
            if hit.any():
                tokens[hit] = token[hit] if isinstance(token, np.ndarray) else token
                open_rows &= ~hit
                if not open_rows.any():
                    break
        return tokens

    # -- compilation ------------------------------------------------------------------------------------------

    def _rule(self, path: Path, keyword: str, expected: Any) -> str:
        self.rules.append(Rule(path, keyword, expected))
        return str(len(self.rules) - 1)

    @staticmethod
    def _keywords(schema: Any, allowed: frozenset[str]) -> list[str]:
        if schema is True:
            return []
        if not isinstance(schema, dict):
            raise UnsupportedSchema("a boolean schema")
        unsupported = (_UNSUPPORTED | (_SUPPORTED - allowed)).intersection(schema)
        if unsupported:
            raise UnsupportedSchema(f"keywords {sorted(unsupported)}")
        return [k for k in KEYWORD_ORDER if k in schema]

    def _object(self, schema: dict, path: Path, node: Source, *, root: bool = False) \
            -> tuple[list[pa.Field], list[Check]]:
        """The fields and checks of an object node (``node``: its struct column and where it is present; the root:
        every parsed row). Its type was checked by the reader."""
        allowed = frozenset({"type", "required", "properties", "additionalProperties"}) if root else _SUPPORTED
        keywords = self._keywords(schema, allowed)
        properties = schema.get("properties", {})
        if not isinstance(properties, dict):
            raise UnsupportedSchema("properties must be an object")
        fields: list[pa.Field] = []
        children: dict[str, Source] = {}
        for key, sub in properties.items():
            if not isinstance(key, str) or not _KEY.match(key):
                raise UnsupportedSchema(f"property name {key!r}")
            arrow_type = self._arrow_type(sub)
            if arrow_type is not None:
                fields.append(pa.field(key, arrow_type))
                children[key] = _child(node, key)
                self.keys.add(key)
        checks: list[Check] = []
        for keyword in keywords:
            expected = schema[keyword]
            if keyword == "required":
                if not isinstance(expected, list) or not all(isinstance(k, str) for k in expected):
                    raise UnsupportedSchema("required must be a list of names")
                if any(key not in children for key in expected):
                    raise UnsupportedSchema("a required key without a type")
                if expected:
                    token = self._rule(path, "required", expected)
                    checks.append(lambda t, tok=token, ks=[children[k] for k in expected]: (
                        node(t)[1] & np.logical_or.reduce([~k(t)[1] for k in ks]), tok))
            elif keyword == "properties":
                for key, sub in properties.items():
                    if key in children:
                        checks += self._value(sub, (*path, key), children[key])
            elif keyword == "additionalProperties":
                if expected is not True and expected != {}:
                    raise UnsupportedSchema("additionalProperties other than true")
            elif keyword != "type":
                raise UnsupportedSchema(f"{keyword} on an object")
        return fields, checks

    def _arrow_type(self, schema: Any) -> pa.DataType | None:
        """The Arrow type a value of ``schema`` is parsed as (the reader rejects any other JSON type), or None when
        the value is not constrained at all."""
        keywords = self._keywords(schema, _SUPPORTED)
        if "type" not in keywords:
            if "enum" in keywords and all(isinstance(v, str) for v in schema["enum"]) and schema["enum"]:
                return pa.string()
            if keywords and keywords != ["additionalProperties"]:
                raise UnsupportedSchema(f"keywords {keywords} without one type")
            return None
        kind = schema["type"]
        if not isinstance(kind, str):
            raise UnsupportedSchema(f"type {kind!r}")
        if kind in _SCALAR_TYPES:
            return _SCALAR_TYPES[kind]
        if kind == "object":
            fields = []
            for key, sub in schema.get("properties", {}).items():
                arrow_type = self._arrow_type(sub)
                if arrow_type is not None:
                    fields.append(pa.field(key, arrow_type))
            return pa.struct(fields)
        if kind == "array":
            items = schema.get("items")
            item_type = self._arrow_type(items) if isinstance(items, dict) else None
            if item_type is None or pa.types.is_struct(item_type) or pa.types.is_list(item_type):
                raise UnsupportedSchema("an array without one schema of scalars for its items")
            return pa.list_(item_type)
        raise UnsupportedSchema(f"type {kind!r}")

    def _value(self, schema: dict, path: Path, source: Source) -> list[Check]:
        """The checks of the value at ``path`` (where present) beyond its JSON type, which the reader checked."""
        if schema.get("type") == "object":
            return self._object(schema, path, source)[1]
        checks: list[Check] = []
        for keyword in self._keywords(schema, _SUPPORTED):
            expected = schema[keyword]
            if keyword in ("type", "additionalProperties"):
                continue
            if keyword in ("minItems", "maxItems"):
                checks.append(self._count(keyword, expected, path, source))
            elif keyword == "items":
                checks.append(self._items(expected, path, source))
            elif keyword in ("required", "properties"):
                continue  # apply to objects only; the value is not one
            else:
                check = self._scalar(keyword, expected, path, source, schema)
                if check is not None:
                    checks.append(check)
        return checks

    def _count(self, keyword: str, expected: Any, path: Path, source: Source) -> Check:
        if isinstance(expected, bool) or not isinstance(expected, int):
            raise UnsupportedSchema(f"{keyword} {expected!r}")
        token = self._rule(path, keyword, expected)
        compare = np.less if keyword == "minItems" else np.greater

        def count(t: Parsed) -> tuple[np.ndarray, str]:
            lists, present = source(t)
            lengths = _numpy(pc.list_value_length(lists), 0)
            return present & compare(lengths, expected), token

        return count

    def _items(self, schema: dict, path: Path, source: Source) -> Check:
        item_path = (*path, None)

        @_memoized
        def items_of(t: Parsed) -> tuple[pa.Array, np.ndarray]:
            lists, _ = source(t)
            values = pc.list_flatten(lists)
            return values, _np(pc.is_valid(values))

        item_checks = [check for keyword in self._keywords(schema, _SCALAR_KEYWORDS) if keyword != "type"
                       and (check := self._scalar(keyword, schema[keyword], item_path, items_of, schema)) is not None]

        def check(t: Parsed) -> tuple[np.ndarray, np.ndarray]:
            lists, present = source(t)
            values, valid = items_of(t)
            n_items = len(values)
            item_tokens = np.full(n_items, None, dtype=object)
            item_tokens[~valid] = REFERENCE  # a null item: the reader reads JSON null as one, the reference rejects it
            open_items = valid.copy()
            for item_check in item_checks:
                broken, token = item_check(t)
                hit = broken & open_items
                item_tokens[hit] = token[hit] if isinstance(token, np.ndarray) else token
                open_items &= ~hit
            broken_rows = np.zeros(t.num_rows, dtype=bool)
            row_tokens = np.full(t.num_rows, None, dtype=object)
            bad = np.flatnonzero(item_tokens != None)  # noqa: E711 (element-wise)
            if len(bad):
                parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)[bad]
                first_rows, first = np.unique(parents, return_index=True)  # items are in order: the first bad one
                chosen = bad[first]
                offsets = _list_offsets(lists)
                broken_rows[first_rows] = present[first_rows]
                row_tokens[first_rows] = [tok if tok == REFERENCE else f"[{i}]{tok}" for i, tok in
                                          zip((chosen - offsets[first_rows]).tolist(), item_tokens[chosen],
                                              strict=True)]
            return broken_rows, row_tokens

        return check

    def _scalar(self, keyword: str, expected: Any, path: Path, source: Source, schema: dict) -> Check | None:
        """One keyword on a scalar value (the reader checked its JSON type: a keyword for another type is moot)."""
        kind = schema.get("type", "string")
        if keyword == "enum":
            if not isinstance(expected, list) or not all(isinstance(v, str) for v in expected) or kind != "string":
                raise UnsupportedSchema(f"enum {expected!r}")
            options = pa.array(expected, pa.string())
            token = self._rule(path, keyword, expected)
            return lambda t: ((lambda v, p: p & ~_np(pc.is_in(v, options)))(*source(t)), token)
        if keyword in ("minLength", "maxLength"):
            if isinstance(expected, bool) or not isinstance(expected, int):
                raise UnsupportedSchema(f"{keyword} {expected!r}")
            if kind != "string":
                return None
            token = self._rule(path, keyword, expected)
            compare = np.less if keyword == "minLength" else np.greater

            def length(t: Parsed) -> tuple[np.ndarray, str]:
                values, present = source(t)
                lengths = _numpy(pc.utf8_length(values), 0)
                return present & compare(lengths, expected), token

            return length
        if keyword in ("pattern", "format"):
            return self._regex(keyword, expected, path, source) if kind == "string" else None
        if keyword in _BOUND_OPS:
            if isinstance(expected, bool) or not isinstance(expected, (int, float)) or not math.isfinite(expected) \
                    or abs(expected) >= _BOUND_LIMIT:
                raise UnsupportedSchema(f"{keyword} {expected!r}")
            if kind not in ("number", "integer"):
                return None
            compare, neighbour = _BOUND_OPS[keyword]
            # an integer compares exactly with the bound's integer neighbour, a double with the (exact) double bound
            bound = neighbour(expected) if kind == "integer" else float(expected)
            token = self._rule(path, keyword, expected)

            def within(t: Parsed) -> tuple[np.ndarray, str]:
                values, present = source(t)
                numbers = _numpy(values, 0)
                return present & compare(numbers, bound), token

            return within
        raise UnsupportedSchema(f"keyword {keyword!r} here")

    def _regex(self, keyword: str, expected: Any, path: Path, source: Source) -> Check | None:
        if not isinstance(expected, str):
            raise UnsupportedSchema(f"{keyword} {expected!r}")
        if keyword == "pattern":  # fastjsonschema searches, every unescaped ``$`` made ``\Z``
            regex, ascii_only = python_regex_to_re2(re.sub(r"(?<!\\)\$", r"\\Z", expected))
        elif expected in self.formats or expected == "date":  # re.match
            regex, ascii_only = python_regex_to_re2(
                self.formats.get(expected) or CodeGeneratorDraft07.FORMAT_REGEXS["date"])
            regex = regex if regex.startswith("^") else "^(?:" + regex + ")"
        elif expected in _KNOWN_FORMATS:
            raise UnsupportedSchema(f"format {expected!r}")
        else:
            return None  # a format fastjsonschema does not know: an annotation
        token = self._rule(path, keyword, expected)

        def check(t: Parsed) -> tuple[np.ndarray, str | np.ndarray]:
            values, present = source(t)
            broken = present & ~_np(pc.match_substring_regex(values, regex))
            if not ascii_only:
                return broken, token
            # past ASCII, Python's ``\d`` and RE2's differ: the reference judges
            unsure = present & ~_np(pc.equal(pc.binary_length(values), pc.utf8_length(values)))
            return broken | unsure, np.where(unsure, REFERENCE, token).astype(object)

        return check


def _np(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow array as numpy, null as False."""
    return _numpy(mask, False).astype(bool, copy=False)


def _numpy(values: pa.Array | pa.ChunkedArray, fill: Any) -> np.ndarray:
    """``values`` as numpy, null as ``fill`` (filled only when there is a null: a fill costs a copy)."""
    if values.null_count:
        values = pc.fill_null(values, fill)
    return values.to_numpy(zero_copy_only=False)


def _array(column: pa.ChunkedArray) -> pa.Array:
    """``column`` as one array (a copy only when it has several chunks)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _list_offsets(lists: pa.Array) -> np.ndarray:
    """Each row's first item's position in the flattened items."""
    lengths = _numpy(pc.list_value_length(lists), 0)
    return np.concatenate([[0], np.cumsum(lengths)[:-1]])


def _memoized(source: Source) -> Source:
    """``source``, run once per :class:`Parsed`."""
    def memoized(t: Parsed) -> tuple[pa.Array, np.ndarray]:
        found = t.memo.get(memoized)
        if found is None:
            found = t.memo[memoized] = source(t)
        return found

    return memoized


def _child(parent: Source, key: str) -> Source:
    @_memoized
    def source(t: Parsed) -> tuple[pa.Array, np.ndarray]:
        values, present = parent(t)
        child = _array(t.table.column(key)) if values is None else pc.struct_field(values, key)
        return child, present & _np(pc.is_valid(child))

    return source


_REGEX_TOKEN = re.compile(r"\\.|\(\?:|\{\d+(?:,\d*)?\}|[\s\S]")
_REGEX_LITERAL = re.compile(r"[A-Za-z0-9 \-_:/@#%&=<>!~\"',;]")
_REGEX_META = frozenset("^.()|*+?")


def python_regex_to_re2(pattern: str) -> tuple[str, bool]:
    """The RE2 form of a Python ``re`` pattern in a subset both read alike, and whether only on ASCII text (the
    pattern has a ``\\d``, which is ``[0-9]`` there but any Unicode digit for Python); raises
    :class:`UnsupportedSchema` for anything else (``\\w``, ``\\s``, lookarounds, flags, ...)."""
    out: list[str] = []
    in_class = False
    for token in _REGEX_TOKEN.findall(pattern):
        if token == "\\d":
            out.append("0-9" if in_class else "[0-9]")
        elif token == "\\Z" and not in_class:
            out.append("\\z")
        elif token.startswith("\\") and len(token) == 2 and token[1].isascii() and not token[1].isalnum():
            out.append(token)
        elif token == "(?:" or (token.startswith("{") and len(token) > 1):
            if in_class:
                raise UnsupportedSchema(f"regular expression {pattern!r}")
            out.append(token)
        elif token == "[" and not in_class:
            in_class = True
            out.append(token)
        elif token == "]" and in_class:
            in_class = False
            out.append(token)
        elif (token in _REGEX_META and not in_class) or (token == "^" and in_class and out[-1] == "[") \
                or _REGEX_LITERAL.fullmatch(token) or (token == "." and in_class):
            out.append(token)
        else:
            raise UnsupportedSchema(f"regular expression {pattern!r} (at {token!r})")
    if in_class:
        raise UnsupportedSchema(f"regular expression {pattern!r}")
    return "".join(out), "\\d" in pattern
