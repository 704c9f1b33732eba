"""`loads_checked` (the inlets' decode + value check) answers exactly as `json.loads` followed
by `check_values`: the same value, or the same kind of error naming the same field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.bodycheck import check_values, loads_checked
from gateway.errors import InputError

LIMITS: dict[str, Any] = {"max_values": 500, "max_depth": 8}


def _nested(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"n": value}
    return value


BODIES = [
    b'{"a": [1, 2.5, "x", true, null], "b": {"c": "\\u00e9\\u003c"}}',
    '{"emoji": "\\ud83d\\ude00", "raw": "é ✓"}'.encode(),
    b'{"lone": "a \\ud800 b"}',
    b'{"lone": "a \\uDFFF b"}',
    b'{"raw": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8 bytes
    b'{"n": NaN}',
    b'{"n": -Infinity}',
    b'{"n": 1e999}',
    b'{"n": 9223372036854775807, "m": -9223372036854775808}',
    b'{"n": 9223372036854775808}',
    json.dumps({"deep": _nested(7)}).encode(),  # 8 levels: allowed
    json.dumps({"deep": _nested(8)}).encode(),  # 9: refused
    json.dumps({"wide": [{"a": {"b": 1}} for _ in range(20)]}).encode(),  # many brackets
    json.dumps({"wide": [[[[[[[[1]]]]]]]] * 3}).encode(),
    json.dumps({"s": "{[{[{[{[{[{["}).encode(),  # brackets in a string are no nesting
    json.dumps({"many": list(range(600))}).encode(),
    json.dumps({"key \ud800": 1}).encode(),
    '{"a": 1}'.encode("utf-16"),
    '{"a": 1}'.encode("utf-8-sig"),
    b'{"a": "\xff"}',
    b'{"a": ',
    b"",
    b"[]",
    b'"just a string"',
]

#: Where orjson (the quick path's decoder) differs from `json.loads`: it takes 2**63..2**64-1
#: as integers and turns bigger ones into floats, refuses a BOM, 1E400, lone surrogates and
#: nesting beyond 1024 levels.
ORJSON_BODIES = [
    b'{"n": 18446744073709551615}',  # 2**64 - 1: an integer to orjson
    b'{"n": 18446744073709551616}',  # 2**64: a float to orjson
    b'{"n": -9223372036854775809}',
    b'{"n": -18446744073709551617}',
    b'{"n": 1000000000000000000, "m": -1000000000000000000}',  # 19 digits, within range
    b'{"s": "12345678901234567890123"}',  # a long digit run in a string
    b'{"n": 123456789012345678901234567890.5}',
    b'{"n": 1E400, "m": 1e-400}',
    b'\xef\xbb\xbf{"a": 1}',
    b'{"a": "\\u0000\\u001f \\/ \\"", "b": -0, "c": 0.1e1, "d": 1.5E+3}',
    b'{"a": 1, "a": 2}',
    b'{"a": "\x01"}',
    b"[" * 1100 + b"]" * 1100,
    b'{"a": 01}',
    b'{"a": 1.}',
    b" \t\r\n[1] ",
]


def _exact(body: bytes) -> tuple[str, Any]:
    try:
        value = json.loads(body)
        check_values(value, **LIMITS)
    except InputError as exc:
        return "input", (exc.code, exc.field)
    except (ValueError, RecursionError):
        return "not json", None
    return "ok", value


def _quick(body: bytes) -> tuple[str, Any]:
    try:
        value = loads_checked(body, **LIMITS)
    except InputError as exc:
        return "input", (exc.code, exc.field)
    except (ValueError, RecursionError):
        return "not json", None
    return "ok", value


@pytest.mark.parametrize("body", BODIES + ORJSON_BODIES)
def test_loads_checked_answers_as_loads_then_check_values(body: bytes) -> None:
    quick, exact = _quick(body), _exact(body)
    assert quick == exact
    assert repr(quick) == repr(exact)  # the same types too: 2**64 stays an int, not a float


def test_the_cases_cover_each_refusal() -> None:
    outcomes = {_exact(body)[0] for body in BODIES}
    codes = {_exact(body)[1][0] for body in BODIES if _exact(body)[0] == "input"}
    assert outcomes == {"ok", "input", "not json"}
    assert codes == {"invalid_text", "out_of_range", "too_deep", "too_many_values"}
