"""Expressions of parameters and constants (``U * L / Re``) and ``${...}`` template fields.

An expression is checked once, when a manifest is loaded (numbers, names it may use, ``+ - * /
// % **`` and unary signs only; an exponent over 64 is refused), and evaluated as a pure function
of the values; a ``${expr}`` field of a template file is replaced by its value, formatted to
round-trip (17 significant digits for floats).
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from sweep.errors import ConfigError

from .errors import config_line

__all__ = ["Expression", "compile_expression", "format_value", "template_fields", "render_fields"]


_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: lambda a, b: _pow(a, b),
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}


def _pow(a: Any, b: Any) -> Any:
    if isinstance(b, (int, float)) and abs(b) > 64:  # 10 ** 10 ** 10 would not end
        raise ValueError(f"exponent {b} is too large (at most 64)")
    return a**b


@dataclass(frozen=True)
class Expression:
    """An arithmetic expression over named values, checked once; ``evaluate`` is pure."""

    text: str
    tree: ast.expr = field(repr=False, compare=False)
    names: frozenset[str] = frozenset()

    def evaluate(self, values: Mapping[str, Any]) -> Any:
        """The expression's value for ``values`` (a mapping holding every name it uses)."""
        return _eval(self.tree, values)


def _eval(node: ast.expr, values: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval(node.left, values), _eval(node.right, values))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, values))
    raise TypeError(f"unsupported expression node {type(node).__name__}")  # compile_expression forbids it


def compile_expression(
    text: Any, names: Collection[str], file: str, where: str, defaults: Mapping[str, Any] | None = None
) -> Expression:
    """``text`` as an Expression over ``names``; a one-line ConfigError for a syntax error, an
    unknown name, anything but arithmetic, or (given ``defaults``) a failure to evaluate at the
    default values (a division by zero, an exponent over 64)."""
    allowed = "an arithmetic expression (+ - * / // % **, numbers) of " + ", ".join(sorted(names))
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ConfigError(config_line(file, where, text, allowed))
    source = str(text).strip()
    try:
        tree = ast.parse(source, mode="eval").body
    except SyntaxError:
        raise ConfigError(config_line(file, where, source, allowed)) from None
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise ConfigError(
                    config_line(file, where, node.id, "a parameter or constant: " + ", ".join(sorted(names)))
                )
            used.add(node.id)
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ConfigError(config_line(file, where, source, allowed))
        elif isinstance(node, (ast.BinOp, ast.UnaryOp)):
            table: Mapping[type, Any] = _BINARY if isinstance(node, ast.BinOp) else _UNARY
            if type(node.op) not in table:
                raise ConfigError(config_line(file, where, source, allowed))
        elif not isinstance(node, (ast.operator, ast.unaryop, ast.Load)):
            raise ConfigError(config_line(file, where, source, allowed))
    expr = Expression(source, tree, frozenset(used))
    if defaults is not None:
        try:
            expr.evaluate(defaults)
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise ConfigError(
                config_line(file, where, source, f"an expression valid at the defaults ({exc})")
            ) from None
    return expr


def format_value(v: Any) -> str:
    """A value as text in an input file: shortest round-trip floats, true/false for booleans."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


_FIELD = re.compile(r"\$\{([^{}]*)\}")  # ${...}; a bare $name (OpenFOAM's macro syntax) is left alone


def template_fields(text: str) -> list[str]:
    """The expressions inside the ``${...}`` fields of a text, in order."""
    return [m.group(1) for m in _FIELD.finditer(text)]


def render_fields(text: str, fields: Mapping[str, Expression], values: Mapping[str, Any]) -> str:
    """``text`` with each ``${expr}`` replaced by the formatted value of its compiled expression."""
    return _FIELD.sub(lambda m: format_value(fields[m.group(1)].evaluate(values)), text)
