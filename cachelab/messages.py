"""The wire format: values and messages as strict, versioned JSON (see docs/protocol.md)."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PROTOCOL = "cachelab"
VERSION = 1
OPS = frozenset({"set", "del", "inv", "sync"})
MAX_MESSAGE_BYTES = 1 << 20
MAX_KEY_CHARS = 4096
MAX_SRC_CHARS = 128
MAX_SEQ = (1 << 63) - 1
_FIELDS = frozenset({"p", "v", "ns", "op", "key", "src", "seq"})
_SCALARS = (str, int, bool, type(None))


class _Sentinel:
    """A named singleton, distinct from every value a user can store."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __bool__(self) -> bool:
        return False


NO_VALUE: Any = _Sentinel("NO_VALUE")
"""Nothing known locally: a miss."""

ABSENT: Any = _Sentinel("ABSENT")
"""Known to be absent from Redis at some version (a negative entry)."""


class InvalidMessage(ValueError):
    """A message that breaks the wire format; it is counted and dropped."""


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded message. ``seq`` is the global sequence number and the key's new version."""

    ns: str
    op: str
    key: str
    src: str
    seq: int
    value: Any = NO_VALUE


def channel(namespace: str) -> str:
    """The pub/sub channel of a namespace."""
    return "{" + namespace + "}:bus"


def _check_json(value: Any) -> None:
    """Raise TypeError unless ``value`` survives a JSON round trip unchanged."""
    kind = type(value)
    if kind in _SCALARS:
        return
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(f"cannot store the non-finite float {value!r}")
        return
    if kind is list:
        for item in value:
            _check_json(item)
        return
    if kind is dict:
        for k, item in value.items():
            if type(k) is not str:
                raise TypeError(f"dict keys must be str, not {type(k).__name__}")
            _check_json(item)
        return
    raise TypeError(f"cannot store a value of type {kind.__name__}")


def encode_value(value: Any) -> str:
    """Encode a value as the JSON fragment ``[0, json]`` or ``[1, "base64"]``."""
    kind = type(value)
    if kind is bytes:
        return '[1,"' + base64.b64encode(value).decode("ascii") + '"]'
    if kind is str:
        return "[0," + _quote(value) + "]"
    if kind is int:
        return "[0," + str(value) + "]"
    _check_json(value)
    return "[0," + json.dumps(value, allow_nan=False, separators=(",", ":")) + "]"


def decode_value(fragment: bytes | str) -> Any:
    """Decode what ``encode_value`` produced; raise InvalidMessage otherwise."""
    try:
        pair = _parse(fragment)
    except (ValueError, RecursionError) as exc:
        raise InvalidMessage(f"value is not JSON: {exc}") from None
    return _value_from_pair(pair)


def _parse(raw: bytes | str) -> Any:
    """Strict JSON (UTF-8, no NaN); one shared decoder, since json.loads builds one per call."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    return _DECODER.decode(text)


def _value_from_pair(pair: Any) -> Any:
    """Turn a parsed ``[tag, data]`` pair back into the value."""
    if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not int:
        raise InvalidMessage("value must be a [tag, data] pair")
    tag, data = pair
    if tag == 0:
        return data
    if tag == 1 and type(data) is str:
        try:
            return base64.b64decode(data, validate=True)
        except binascii.Error:
            raise InvalidMessage("bytes value is not base64") from None
    raise InvalidMessage(f"unknown value tag {tag!r}")


def _reject_constant(name: str) -> Any:
    """Refuse NaN and Infinity, which JSON itself does not allow."""
    raise InvalidMessage(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
# The C string encoder behind json.dumps, without its per-call Python wrapper.
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii


def message_prefix(namespace: str, src: str) -> str:
    """The part of every message a node sends that never changes."""
    return '{"p":"cachelab","v":1,"ns":' + json.dumps(namespace) + ',"src":' + json.dumps(src)


def message_head(prefix: str, op: str, key: str, fragment: str | None) -> str:
    """A message up to its ``seq``; the write script appends the number and ``}``."""
    head = prefix + ',"op":"' + op + '","key":' + _quote(key)
    if fragment is not None:
        head += ',"val":' + fragment
    return head + ',"seq":'


def encode(msg: Message) -> bytes:
    """Encode a whole message (used by the simulator and by tests)."""
    fragment = None if msg.value is NO_VALUE else encode_value(msg.value)
    head = message_head(message_prefix(msg.ns, msg.src), msg.op, msg.key, fragment)
    return (head + str(msg.seq) + "}").encode()


def decode(raw: bytes | str, namespace: str, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Decode and validate one message of ``namespace``; raise InvalidMessage otherwise."""
    if len(raw) > max_bytes:
        raise InvalidMessage(f"message of {len(raw)} bytes exceeds {max_bytes}")
    try:
        obj = _parse(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidMessage(f"not JSON: {exc}") from None
    if type(obj) is not dict:
        raise InvalidMessage("a message is a JSON object")
    _check_envelope(obj, namespace)
    value = NO_VALUE
    if "val" in obj:
        value = _value_from_pair(obj["val"])
    return Message(obj["ns"], obj["op"], obj["key"], obj["src"], obj["seq"], value)


def _check_envelope(obj: dict[str, Any], namespace: str) -> None:
    """Validate every field but the value."""
    fields = obj.keys()
    if not fields >= _FIELDS or len(fields) - len(_FIELDS) > ("val" in fields):
        raise InvalidMessage(f"wrong fields {sorted(fields)}")
    if obj["p"] != PROTOCOL or type(obj["v"]) is not int or obj["v"] != VERSION:
        raise InvalidMessage(f"not {PROTOCOL} protocol version {VERSION}")
    if obj["ns"] != namespace:
        raise InvalidMessage(f"foreign namespace {obj['ns']!r}")
    op, key, src, seq = obj["op"], obj["key"], obj["src"], obj["seq"]
    if type(op) is not str or op not in OPS or ("val" in obj and op != "set"):
        raise InvalidMessage(f"bad op {op!r}")
    if type(key) is not str or not 0 < len(key) <= MAX_KEY_CHARS:
        raise InvalidMessage("bad key")
    if type(src) is not str or not 0 < len(src) <= MAX_SRC_CHARS:
        raise InvalidMessage("bad src")
    if type(seq) is not int or not (0 if op == "sync" else 1) <= seq <= MAX_SEQ:
        raise InvalidMessage("bad seq")
