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
from cachelab.auth import Signer
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
    value = value if op == "set" else messages.NO_VALUE
    msg = Message("ns", op, key, "node#1", seq, value, "1764230000.1-ab")
    assert messages.decode(messages.encode(msg), "ns") == msg


def test_markers_may_carry_sequence_zero_and_writes_may_not() -> None:
    for op in ("sync", "beat"):
        marker = Message("ns", op, "nonce", "a#1", 0, inc="i")
        assert messages.decode(messages.encode(marker), "ns") == marker
    with pytest.raises(InvalidMessage, match="seq"):
        messages.decode(messages.encode(Message("ns", "set", "k", "a#1", 0, inc="i")), "ns")


def _valid() -> dict[str, Any]:
    return {
        "p": "cachelab",
        "v": 2,
        "ns": "ns",
        "src": "a#1",
        "op": "set",
        "key": "k",
        "inc": "1764230000.1-ab",
        "seq": 3,
    }


@pytest.mark.parametrize(
    "change",
    [
        {"p": "other"},
        {"v": True},
        {"v": "2"},
        {"ns": "foreign"},
        {"op": "drop"},
        {"op": ["set"]},
        {"key": ""},
        {"key": 5},
        {"src": None},
        {"inc": ""},
        {"inc": 7},
        {"inc": "x" * 65},
        {"seq": 0},
        {"seq": -1},
        {"seq": True},
        {"seq": 2**63},
        {"seq": 1.5},
        {"val": [2, "x"]},
        {"val": [1, "not base64!"]},
        {"val": "bare"},
        {"extra": 1},
        {"mac": "0" * 40},
    ],
)
def test_malformed_messages_are_rejected(change: dict[str, Any]) -> None:
    raw = json.dumps({**_valid(), **change}).encode()
    with pytest.raises(InvalidMessage):
        messages.decode(raw, "ns")


@pytest.mark.parametrize("version", [1, 3])
def test_another_protocol_version_is_refused_by_name(version: int) -> None:
    raw = json.dumps({**_valid(), "v": version}).encode()
    with pytest.raises(messages.WrongVersion, match=f"version {version}; this node speaks 2"):
        messages.decode(raw, "ns")


def test_a_v1_message_as_v1_nodes_sent_it_is_refused_as_a_wrong_version() -> None:
    v1 = b'{"p":"cachelab","v":1,"ns":"ns","src":"a#1","op":"set","key":"k","seq":3}'
    with pytest.raises(messages.WrongVersion, match="version 1"):
        messages.decode(v1, "ns")


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


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def test_one_depth_limit_binds_set_and_every_peer() -> None:
    limit = messages.MAX_DEPTH
    deepest = _nested(limit)
    assert messages.decode_value(messages.encode_value(deepest)) == deepest
    msg = Message("ns", "set", "k", "a#1", 1, deepest, "i")
    assert messages.decode(messages.encode(msg), "ns").value == deepest
    for too_deep in (_nested(limit + 1), _nested(995), {"a": _nested(limit)}):
        with pytest.raises(ValueError, match=f"deeper than {limit}"):
            messages.encode_value(too_deep)
    # what another writer put there is refused by the reader with the same words
    foreign = "[0," + "[" * (limit + 1) + "]" * (limit + 1) + "]"
    with pytest.raises(InvalidMessage, match=f"deeper than {limit}"):
        messages.decode_value(foreign)


def test_many_shallow_containers_are_not_mistaken_for_depth() -> None:
    wide = [{"a": [i]} for i in range(500)]
    assert messages.decode_value(messages.encode_value(wide)) == wide


def test_bytes_inside_a_container_are_refused_with_a_message_that_says_so() -> None:
    assert messages.decode_value(messages.encode_value(b"\x00raw")) == b"\x00raw"
    for value in ([b"x"], {"k": b"x"}):
        with pytest.raises(TypeError, match="only as a whole value"):
            messages.encode_value(value)


def test_a_value_over_the_size_limit_is_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(messages, "MAX_VALUE_BYTES", 100)
    messages.encode_value("x" * 90)
    with pytest.raises(ValueError, match="over 100"):
        messages.encode_value("x" * 200)


def test_a_head_too_large_to_carry_its_value_does_not_fit() -> None:
    prefix = messages.message_prefix("ns", "a#1")
    small = messages.message_head(prefix, "set", "k", messages.encode_value("v"))
    big = messages.message_head(prefix, "set", "k", messages.encode_value("v" * (1 << 20)))
    assert messages.fits(small) and not messages.fits(big)
    tail = messages.message_tail("9" * messages.MAX_INC_CHARS, messages.MAX_SEQ)
    edge = "x" * (messages.MAX_MESSAGE_BYTES - messages.MAX_TAIL_BYTES)
    assert messages.fits(edge)
    signer = Signer(b"s" * 16, "ns")
    assert len(messages.finish(edge + tail, signer)) <= messages.MAX_MESSAGE_BYTES


def test_a_signed_message_verifies_and_any_change_to_it_fails() -> None:
    signer = Signer(b"correct horse battery", "ns")
    msg = Message("ns", "set", "k", "a#1", 7, "v", "inc-1")
    raw = messages.encode(msg, signer)
    assert messages.decode(raw, "ns", signer) == msg
    for i in range(len(raw) - 2):  # every byte but the closing '"}'
        tampered = raw[:i] + bytes([raw[i] ^ 1]) + raw[i + 1 :]
        with pytest.raises(InvalidMessage):
            messages.decode(tampered, "ns", signer)


def test_signed_and_unsigned_messages_are_refused_by_the_other_kind_of_node() -> None:
    signer = Signer(b"correct horse battery", "ns")
    msg = Message("ns", "inv", "k", "a#1", 7, inc="inc-1")
    with pytest.raises(messages.Unauthenticated, match="no secret"):
        messages.decode(messages.encode(msg, signer), "ns")
    with pytest.raises(messages.Unauthenticated, match="no tag"):
        messages.decode(messages.encode(msg), "ns", signer)
    other = Signer(b"another secret value", "ns")
    with pytest.raises(messages.Unauthenticated, match="does not match"):
        messages.decode(messages.encode(msg, other), "ns", signer)
    elsewhere = Signer(b"correct horse battery", "other-namespace")
    with pytest.raises(messages.Unauthenticated, match="does not match"):
        messages.decode(messages.encode(msg, elsewhere), "ns", signer)
