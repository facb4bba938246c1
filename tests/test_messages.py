"""The wire format: value encoding and strict message validation."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachelab import messages
from cachelab.messages import InvalidMessage, Message

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(value=json_values | st.binary())
def test_every_supported_value_round_trips_exactly(value: Any) -> None:
    decoded = messages.decode_value(messages.encode_value(value))
    assert decoded == value and type(decoded) is type(value)


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (object(), "object"),
        ((1, 2), "tuple"),
        ({1, 2}, "set"),
        ([1, (2,)], "tuple"),
        ({1: "a"}, "int"),
        (bytearray(b"x"), "bytearray"),
        ({"a": {"b": 1j}}, "complex"),
    ],
)
def test_unsupported_values_raise_type_error_naming_the_type(value: Any, type_name: str) -> None:
    with pytest.raises(TypeError, match=type_name):
        messages.encode_value(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, [-math.inf]])
def test_non_finite_floats_are_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="non-finite"):
        messages.encode_value(value)


@given(
    op=st.sampled_from(["set", "del", "inv"]),
    key=st.text(min_size=1, max_size=50),
    seq=st.integers(1, 2**63 - 1),
    value=json_values | st.binary(),
)
def test_messages_round_trip(op: str, key: str, seq: int, value: Any) -> None:
    msg = Message("ns", op, key, "node#1", seq, value if op == "set" else messages.NO_VALUE)
    assert messages.decode(messages.encode(msg), "ns") == msg


def _valid() -> dict[str, Any]:
    return {"p": "cachelab", "v": 1, "ns": "ns", "src": "a#1", "op": "set", "key": "k", "seq": 3}


@pytest.mark.parametrize(
    "change",
    [
        {"p": "other"},
        {"v": 2},
        {"v": True},
        {"ns": "foreign"},
        {"op": "drop"},
        {"op": ["set"]},
        {"key": ""},
        {"key": 5},
        {"src": None},
        {"seq": 0},
        {"seq": -1},
        {"seq": True},
        {"seq": 2**63},
        {"seq": 1.5},
        {"val": [2, "x"]},
        {"val": [1, "not base64!"]},
        {"val": "bare"},
        {"extra": 1},
    ],
)
def test_malformed_messages_are_rejected(change: dict[str, Any]) -> None:
    raw = json.dumps({**_valid(), **change}).encode()
    with pytest.raises(InvalidMessage):
        messages.decode(raw, "ns")


def test_missing_fields_a_value_on_a_delete_and_oversize_are_rejected() -> None:
    for field in _valid():
        broken = _valid()
        del broken[field]
        with pytest.raises(InvalidMessage):
            messages.decode(json.dumps(broken), "ns")
    with pytest.raises(InvalidMessage):
        messages.decode(json.dumps({**_valid(), "op": "del", "val": [0, 1]}), "ns")
    with pytest.raises(InvalidMessage, match="exceeds"):
        messages.decode(b"{}", "ns", max_bytes=1)
    with pytest.raises(InvalidMessage):
        messages.decode(b'{"p": NaN}', "ns")


@given(raw=st.binary(max_size=300))
def test_decode_raises_only_invalid_message_on_any_bytes(raw: bytes) -> None:
    with contextlib.suppress(InvalidMessage):
        messages.decode(raw, "ns")


def test_deeply_nested_json_is_rejected_not_crashing() -> None:
    with pytest.raises(InvalidMessage):
        messages.decode(b"[" * 100_000 + b"]" * 100_000, "ns")
