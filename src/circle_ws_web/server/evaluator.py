"""The sandboxed script evaluator behind ``play``.

Scripts are single Python *expressions* evaluated by ``simpleeval``'s ``EvalWithCompoundTypes``
(not plain ``SimpleEval``): scripts may build and return lists, tuples, dicts and sets and use
comprehensions, which makes ``play`` useful for more than arithmetic, while simpleeval still
bounds comprehensions (``MAX_COMPREHENSION_LENGTH``), string/sequence growth
(``MAX_STRING_LENGTH``) and exponents (``MAX_POWER``), and refuses imports, dunder / ``_``
attributes, ``open``, ``eval`` and friends.

simpleeval's limits alone still let a one-liner freeze or exhaust the process
(``4000000 ** 4000000`` holds the GIL for ~30 s; ``"%999999999d" % 1`` or ``"a".ljust(10**9)``
allocate a gigabyte; ``str([[0] * 100000] * 100000)`` far more), so this module adds:

- a deadline / cancellation check before every AST node, so a timed-out script really stops
  (its worker does not keep burning CPU, and is not killed) at the next node;
- an integer size cap (``MAX_INT_BITS``) enforced before ``**`` and on every intermediate int;
- a cumulative size budget (``MAX_TOTAL_UNITS``) over the lengths of all intermediate
  strings / containers, bounding what a comprehension can allocate;
- an attribute allow-list without the size-amplifying methods (``ljust``, ``replace``,
  ``join``, ``to_bytes``, ``list.extend`` ...);
- bounded string conversion (``str()``, f-strings, ``%`` formatting, the final output) that
  estimates the size *before* building the string.

What these limits cannot catch: a single C-level operation on large but legal operands (e.g.
comparing two 100000 x 100000 nested lists) runs for a long time without reaching the next AST
node, and allocation happens in C too. So the server never calls :func:`evaluate` on its event
loop or in a thread: :mod:`.workers` runs it in worker processes with a wall-clock kill and an
address-space limit, where such a script costs its own worker and nothing else.
"""

from __future__ import annotations

import ast
import operator as op
import re
import time
import types
from typing import Any

import simpleeval
from simpleeval import EvalWithCompoundTypes

__all__ = [
    "MAX_INT_BITS",
    "MAX_TOTAL_UNITS",
    "CancelToken",
    "ScriptError",
    "ScriptMemoryError",
    "ScriptTimeout",
    "evaluate",
]

MAX_INT_BITS = 1_000_000
"""Largest integer (in bits, ~301k decimal digits) a script may produce; ~40 ms to compute."""

MAX_TOTAL_UNITS = 20_000_000
"""Budget for the summed lengths of every intermediate str/bytes/container a script produces."""

MAX_ERROR_CHARS = 1000
"""Error messages are truncated: simpleeval quotes the whole expression in some of them."""

_SIZE_AMPLIFIERS: dict[type | None, set[str]] = {
    str: {
        "center",
        "ljust",
        "rjust",
        "zfill",
        "expandtabs",
        "replace",
        "join",
        "translate",
        "maketrans",
        "format",
        "format_map",
    },
    int: {"to_bytes"},
    bool: {"to_bytes"},
    list: {"extend"},
}

ALLOWED_ATTRS: dict[type | None, set[str]] = {
    typ: set(names) - _SIZE_AMPLIFIERS.get(typ, set())
    for typ, names in simpleeval.BASIC_ALLOWED_ATTRS.items()
}

_PRIMITIVE_TYPES = frozenset({int, float, str, bool, type(None), bytes, complex})
_SIZED_TYPES = frozenset({str, bytes, list, tuple, dict, set, frozenset})
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_NUMBER = re.compile(r"\d+")


class ScriptError(Exception):
    """The script failed; ``str(exc)`` is the message sent to the client (-32010)."""


class ScriptTimeout(ScriptError):
    """The script ran past its deadline or was cancelled by the server."""


class ScriptMemoryError(ScriptError):
    """The script ran out of memory (its worker's address-space limit)."""


MEMORY_MESSAGE = "script exceeded its memory limit"


class CancelToken:
    """Deadline plus cancel flag checked before every AST node.

    A plain attribute write is atomic under the GIL, so no lock is needed when another thread
    cancels.
    """

    __slots__ = ("deadline", "cancelled", "timeout")

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def check(self) -> None:
        """Raise :class:`ScriptTimeout` once cancelled or past the deadline."""
        if self.cancelled or (self.deadline is not None and time.monotonic() > self.deadline):
            raise ScriptTimeout(timeout_message(self.timeout))


def timeout_message(timeout: float | None) -> str:
    """The single wording for a timeout, whether the worker or the server notices first."""
    return f"script timed out after {timeout:g} s" if timeout is not None else "script cancelled"


def _estimate_len(value: Any, limit: int) -> int:
    """A lower bound of ``len(str(value))``, exiting early once it exceeds ``limit``.

    Every visited element adds at least one, so cycles and huge fan-out terminate within
    ``limit`` steps. Used to refuse a conversion before allocating the string.
    """
    typ = type(value)
    if typ is str or typ is bytes:
        return len(value)
    if typ is int:
        return int(value.bit_length()) * 3 // 10 + 1
    if typ in (list, tuple, set, frozenset) or typ.__name__ in ("dict_keys", "dict_values"):
        total = 2
        for item in value:
            total += _estimate_len(item, limit) + 2
            if total > limit:
                return total
        return total
    if typ is dict or typ.__name__ == "dict_items":
        items = value.items() if typ is dict else value
        total = 2
        for key, item in items:
            total += _estimate_len(key, limit) + _estimate_len(item, limit) + 4
            if total > limit:
                return total
        return total
    return 1


def bounded_str(value: Any, limit: int, what: str = "string") -> str:
    """``str(value)`` that refuses (before building it) a result longer than ``limit``."""
    if _estimate_len(value, limit) > limit:
        raise simpleeval.IterableTooLong(f"{what} would exceed {limit} characters")
    text = str(value)
    if len(text) > limit:
        raise simpleeval.IterableTooLong(f"{what} would exceed {limit} characters")
    return text


def _safe_str(*args: Any, **kwargs: Any) -> str:
    """The ``str`` offered to scripts: conversion of one object is size-bounded."""
    if len(args) == 1 and not kwargs:
        return bounded_str(args[0], simpleeval.MAX_STRING_LENGTH)
    return str(*args, **kwargs)


def _safe_power(a: Any, b: Any) -> Any:
    """simpleeval's power limit, plus a cap on the size of an integer result.

    ``MAX_POWER`` alone allows ``4000000 ** 4000000`` (an 88-Mbit integer, ~30 s of C code
    holding the GIL, which no timeout can interrupt).
    """
    if type(a) is int and type(b) is int and b > 0 and abs(a) > 1:
        if (abs(a).bit_length() - 1) * b > MAX_INT_BITS:
            raise simpleeval.NumberTooHigh(f"{a} ** {b} would exceed {MAX_INT_BITS} bits")
    return simpleeval.safe_power(a, b)


def _safe_mod(a: Any, b: Any) -> Any:
    """``%``; for printf-style string formatting, refuse huge widths/precisions and arguments."""
    if isinstance(a, (str, bytes)):
        text = a if isinstance(a, str) else a.decode("latin-1")
        limit = simpleeval.MAX_STRING_LENGTH
        for match in _PERCENT_SPEC.finditer(text):
            for group in match.groups():
                if group == "*" or (group is not None and int(group) > limit):
                    raise simpleeval.IterableTooLong(f"format width/precision too large: {match.group(0)!r}")
        if _estimate_len(b, limit) + len(a) > limit:
            raise simpleeval.IterableTooLong(f"formatted string would exceed {limit} characters")
    return op.mod(a, b)


OPERATORS: dict[type, Any] = {
    **simpleeval.DEFAULT_OPERATORS,
    ast.Pow: _safe_power,
    ast.Mod: _safe_mod,
}

FUNCTIONS: dict[str, Any] = {**simpleeval.DEFAULT_FUNCTIONS, "str": _safe_str}


class _SandboxEval(EvalWithCompoundTypes):  # type: ignore[misc]  # simpleeval is untyped
    """EvalWithCompoundTypes with a per-node deadline check and size accounting.

    One instance per evaluation: simpleeval keeps per-run state on the instance (the
    comprehension counter, the swapped name handler), so instances must not be shared
    between threads.
    """

    def __init__(self, token: CancelToken) -> None:
        super().__init__(
            operators=OPERATORS,
            functions=dict(FUNCTIONS),
            names=dict(simpleeval.DEFAULT_NAMES),
            allowed_attrs=ALLOWED_ATTRS,
        )
        self._token = token
        self._units = 0

    def _eval(self, node: ast.AST) -> Any:
        self._token.check()
        result = super()._eval(node)
        typ = type(result)
        if typ is int:
            if result.bit_length() > MAX_INT_BITS:
                raise simpleeval.NumberTooHigh(f"integer larger than {MAX_INT_BITS} bits")
        elif typ in _SIZED_TYPES:
            self._units += len(result)
            if self._units > MAX_TOTAL_UNITS:
                raise simpleeval.IterableTooLong(
                    f"script exceeded its size budget ({MAX_TOTAL_UNITS} elements/characters)"
                )
        return result

    def _check_disallowed_items(self, item: Any) -> None:
        """simpleeval's check of every node result for modules / forbidden functions, made
        linear in *distinct* containers and interruptible.

        The original recurses into every element each time, so ``[[0] * 100000] * 100000``
        (100000 references to one list, legal under ``MAX_STRING_LENGTH``) costs 10**10
        steps, minutes of CPU that no deadline could stop.
        """
        if type(item) in _PRIMITIVE_TYPES:
            return
        stack = [item]
        seen: set[int] = set()
        while stack:
            obj = stack.pop()
            typ = type(obj)
            if typ in _PRIMITIVE_TYPES or typ is simpleeval.ModuleWrapper:
                continue
            if isinstance(obj, types.ModuleType):
                raise simpleeval.FeatureNotAvailable("Sorry, modules are not allowed")
            if isinstance(obj, (list, tuple, set, frozenset, dict)):
                if id(obj) not in seen:
                    seen.add(id(obj))
                    self._token.check()
                    stack.extend(obj.values() if isinstance(obj, dict) else obj)
            elif callable(obj):
                try:
                    forbidden = obj in simpleeval.DISALLOW_FUNCTIONS
                except TypeError:  # unhashable callable: cannot be one of them
                    forbidden = False
                if forbidden:
                    raise simpleeval.FeatureNotAvailable("This function is forbidden")

    def _eval_formattedvalue(self, node: Any) -> Any:
        value = self._eval(node.value)
        if node.format_spec:
            spec = self._eval(node.format_spec)
            limit = simpleeval.MAX_STRING_LENGTH
            if any(int(n) > limit for n in _NUMBER.findall(spec)):
                raise simpleeval.IterableTooLong(f"format width/precision too large: {spec!r}")
            if spec:  # containers reject non-empty specs; numbers/strings are bounded above
                return ("{:" + spec + "}").format(value)
        return bounded_str(value, simpleeval.MAX_STRING_LENGTH)


def _describe(exc: BaseException) -> str:
    detail = str(exc)
    text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 3] + "..."
    return _valid_utf8(text)


def _valid_utf8(text: str) -> str:
    """Messages may quote script strings; a lone surrogate becomes ``\\udxxx`` (sendable)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def evaluate(script: str, *, max_output: int = 65536, token: CancelToken | None = None) -> str:
    """Evaluate one expression and return ``str(result)``; raise :class:`ScriptError` on failure.

    Synchronous and CPU-bound: the server runs it in a worker process (:mod:`.workers`).
    ``token`` carries the deadline; the check runs before every AST node. Raises
    :class:`ScriptMemoryError` on ``MemoryError``.
    """
    token = token or CancelToken()
    try:
        try:
            tree = ast.parse(script.strip())
        except MemoryError:  # CPython's parser says "stack overflow" so (a 64 KiB script allocates little)
            raise ScriptError("script too complex to parse (nested too deeply)") from None
        if not tree.body:
            raise ScriptError("empty script: expected one expression")
        if len(tree.body) > 1:
            raise ScriptError(f"a script is one expression, got {len(tree.body)} statements")
        stmt = tree.body[0]
        if not isinstance(stmt, ast.Expr):
            raise ScriptError(
                f"a script is one expression; statements ({type(stmt).__name__}) are not allowed"
            )
        value = _SandboxEval(token).eval(script, previously_parsed=stmt)
        token.check()
        if _estimate_len(value, max_output) > max_output:
            raise ScriptError(f"output too large (limit {max_output} characters)")
        output = str(value)
        if len(output) > max_output:
            raise ScriptError(f"output too large ({len(output)} characters, limit {max_output})")
        try:
            output.encode("utf-8")  # a text frame must be UTF-8: "\ud800" has no encoding
        except UnicodeEncodeError as exc:
            raise ScriptError(
                f"output is not valid UTF-8 (lone surrogate {output[exc.start]!a} at index {exc.start})"
            ) from None
        return output
    except ScriptError:
        raise
    except MemoryError:
        raise ScriptMemoryError(MEMORY_MESSAGE) from None
    except Exception as exc:  # anything the script did wrong, RecursionError too
        raise ScriptError(_describe(exc)) from None
