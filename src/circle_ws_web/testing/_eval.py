"""The fake server's default ``play``: arithmetic over int/float literals, nothing else.

Why so small: a test needs answers it can predict (``"40 + 2"`` -> ``"42"``) and errors it can
provoke (``"1/0"``), in the browser too, without the reference server's ``simpleeval``. Walking
the ``ast`` with an allow-list means no name, call, attribute or string can ever run, and the
size bounds below keep a hostile one-liner (``9**9**9``) from freezing a test.
"""

from __future__ import annotations

import ast
import operator
from typing import Callable, Union

__all__ = ["MAX_INT_BITS", "MAX_NODES", "MAX_SCRIPT_LENGTH", "ScriptError", "safe_eval"]

#: Longest script accepted, in characters.
MAX_SCRIPT_LENGTH = 10_000
#: Most AST nodes a script may have (bounds the recursion of the walk, too).
MAX_NODES = 500
#: Largest integer a script may produce (~3000 decimal digits, within ``str(int)``'s limit).
MAX_INT_BITS = 10_000

Number = Union[int, float]

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


class ScriptError(Exception):
    """The script is not allowed or failed; the fake server answers -32010 with this message."""


def _bits(value: Number) -> int:
    return value.bit_length() if isinstance(value, int) else 0


def _pow(base: Number, exp: Number) -> Number:
    if isinstance(base, int) and isinstance(exp, int) and exp > 0 and abs(base) > 1:
        if _bits(base) * exp > MAX_INT_BITS:
            raise ScriptError(f"result too large (more than {MAX_INT_BITS} bits)")
    return operator.pow(base, exp)


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, (int, float)) and not isinstance(value, bool):  # not complex, str...
            if _bits(value) > MAX_INT_BITS:
                raise ScriptError(f"literal too large (more than {MAX_INT_BITS} bits)")
            return value
        raise ScriptError(f"only int and float literals are allowed, not {type(value).__name__}")
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        fn = _pow if isinstance(node.op, ast.Pow) else _BINARY[type(node.op)]
        result = fn(left, right)
        if isinstance(result, complex):  # (-8) ** 0.5
            raise ScriptError("complex result")
        if _bits(result) > MAX_INT_BITS:
            raise ScriptError(f"result too large (more than {MAX_INT_BITS} bits)")
        return result
    raise ScriptError(f"{type(node).__name__} is not allowed (only + - * / // % ** and parentheses)")


def safe_eval(script: str) -> str:
    """Evaluate an arithmetic expression and return its value as text (``str()``).

    ``safe_eval("40 + 2") == "42"``, ``safe_eval("7 / 2") == "3.5"``. Anything else (names,
    calls, strings, oversized numbers, division by zero) raises :class:`ScriptError`.
    """
    if not isinstance(script, str):
        raise ScriptError(f"script must be a str, not {type(script).__name__}")
    if len(script) > MAX_SCRIPT_LENGTH:
        raise ScriptError(f"script longer than {MAX_SCRIPT_LENGTH} characters")
    try:
        tree = ast.parse(script.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ScriptError(f"syntax error: {exc}") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ScriptError(f"script has more than {MAX_NODES} syntax nodes")
    try:
        return str(_eval(tree))
    except ScriptError:
        raise
    except ZeroDivisionError:
        raise ScriptError("division by zero") from None
    except (OverflowError, ValueError, RecursionError) as exc:
        raise ScriptError(f"{type(exc).__name__}: {exc}") from None
