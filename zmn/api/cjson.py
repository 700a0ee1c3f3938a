"""Compact JSON through the standard library's C accelerator, without the :mod:`json` package.

``loads(text)`` is ``json.loads(text)`` and ``dumps(obj)`` is ``json.dumps(obj,
ensure_ascii=False, separators=(",", ":"))``: the same C scanner and encoder (``_json``)
that :mod:`json` itself uses for those arguments. Importing :mod:`json` (its decoder,
encoder and scanner modules compile regular expressions) costs a cold ``zcli`` about a
millisecond and a half of the few it may spend; this module imports ``_json`` alone. Errors
are json's: ValueError (``json.JSONDecodeError`` from the scanner, which imports
:mod:`json.decoder` only to raise it) and TypeError for what cannot be encoded. Where
``_json`` is missing (another interpreter) :mod:`json` does the work.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_WHITESPACE = " \t\n\r"  # json's own (its WHITESPACE expression)


class _Context:
    """The attributes ``_json.make_scanner`` reads from a ``json.JSONDecoder``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    def __init__(self, parse_constant: Callable[[str], Any] | None) -> None:
        # json's default: -Infinity, Infinity and NaN as floats
        self.parse_constant = parse_constant or _CONSTANTS.__getitem__


_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}
_scanners: dict[Any, Any] = {}


def loads(text: str, parse_constant: Callable[[str], Any] | None = None) -> Any:
    """``json.loads(text, parse_constant=parse_constant)``."""
    try:
        import _json
    except ImportError:  # pragma: no cover - CPython has it
        import json

        return json.loads(text, parse_constant=parse_constant)
    scan = _scanners.get(parse_constant)
    if scan is None:
        context: Any = _Context(parse_constant)  # duck-typed: typeshed wants a JSONDecoder
        scan = _scanners[parse_constant] = _json.make_scanner(context)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        obj, end = scan(text, start)
    except StopIteration as exc:
        raise ValueError(f"Expecting value: char {exc.value}") from None
    if text[end:].strip(_WHITESPACE):
        raise ValueError(f"Extra data: char {end}")
    return obj


def _no_default(obj: Any) -> Any:
    raise TypeError(f"Object of type {obj.__class__.__name__} is not JSON serializable")


def dumps(obj: Any, *, default: Callable[[Any], Any] | None = None, allow_nan: bool = True) -> str:
    """``json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=default,
    allow_nan=allow_nan)``."""
    try:
        import _json
    except ImportError:  # pragma: no cover - CPython has it
        import json

        return json.dumps(
            obj, ensure_ascii=False, separators=(",", ":"), default=default, allow_nan=allow_nan
        )
    encode = _json.make_encoder(
        {}, default or _no_default, _json.encode_basestring, None, ":", ",", False, False, allow_nan
    )
    return "".join(encode(obj, 0))
