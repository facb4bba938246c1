"""The wire format: values and messages as strict, versioned JSON (see docs/protocol.md).

A client builds a message's *head* (everything it knows); the write script appends the
*tail* (the incarnation and sequence number only the store knows) and, on an
authenticated namespace, the tag over everything before it. ``decode`` is the one place
a message is validated; the limits here bind ``set()`` and every peer alike.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cachelab.auth import TAG_CHARS, Signer
from cachelab.errors import CachelabError

PROTOCOL = "cachelab"
VERSION = 2
OPS = frozenset({"set", "del", "inv", "sync", "beat"})
MARKERS = frozenset({"sync", "beat"})
"""Ops that change nothing: they carry the store's current (incarnation, seq)."""
MAX_MESSAGE_BYTES = 1 << 20
MAX_TAIL_BYTES = 160  # '"inc":"…","seq":…' plus the tag and the closing brace
MAX_VALUE_BYTES = 64 << 20
MAX_DEPTH = 100
MAX_KEY_CHARS = 4096
MAX_SRC_CHARS = 128
MAX_INC_CHARS = 64
MAX_SEQ = (1 << 63) - 1
_FIELDS = frozenset({"p", "v", "ns", "op", "key", "src", "inc", "seq"})
_OPTIONAL = frozenset({"val", "mac"})
_SCALARS = (str, int, bool, type(None))
_TAG_PREFIX = b',"mac":"'
_SIGNED_SUFFIX = len(_TAG_PREFIX) + TAG_CHARS + 2  # ,"mac":"<tag>"}


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


class InvalidMessage(CachelabError, ValueError):
    """A message that breaks the wire format; it is counted and dropped."""


class WrongVersion(InvalidMessage):
    """A well-formed message of another protocol version (a node to upgrade)."""


class Unauthenticated(InvalidMessage):
    """A message whose tag is missing, unexpected or wrong."""


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded message. ``seq`` is the sequence number and the key's new version;
    for a marker (sync, beat) it is the store's current sequence number."""

    ns: str
    op: str
    key: str
    src: str
    seq: int
    value: Any = NO_VALUE
    inc: str = ""


def channel(namespace: str) -> str:
    """The pub/sub channel of a namespace."""
    return "{" + namespace + "}:bus"


# -- values ----------------------------------------------------------------------


def _check_json(value: Any, depth: int = 0) -> None:
    """Raise unless ``value`` survives a JSON round trip unchanged, within MAX_DEPTH."""
    kind = type(value)
    if kind in _SCALARS:
        return
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(f"cannot store the non-finite float {value!r}")
        return
    if kind is bytes:
        raise TypeError("bytes can be stored only as a whole value, not inside a list or dict")
    if kind is not list and kind is not dict:
        raise TypeError(f"cannot store a value of type {kind.__name__}")
    if depth >= MAX_DEPTH:
        raise ValueError(f"value nests deeper than {MAX_DEPTH} lists and dicts")
    items = value.values() if kind is dict else value
    if kind is dict:
        _check_dict_keys(value)
    for item in items:
        _check_json(item, depth + 1)


def _check_dict_keys(value: dict[Any, Any]) -> None:
    """JSON objects have string keys only."""
    for key in value:
        if type(key) is not str:
            raise TypeError(f"dict keys must be str, not {type(key).__name__}")


def encode_value(value: Any) -> str:
    """Encode a value as the JSON fragment ``[0, json]`` or ``[1, "base64"]``."""
    kind = type(value)
    if kind is bytes:
        encoded = '[1,"' + base64.b64encode(value).decode("ascii") + '"]'
    elif kind is str:
        encoded = "[0," + _quote(value) + "]"
    elif kind is int:
        return "[0," + str(value) + "]"
    else:
        _check_json(value)
        encoded = "[0," + json.dumps(value, allow_nan=False, separators=(",", ":")) + "]"
    if len(encoded) > MAX_VALUE_BYTES:
        raise ValueError(f"value encodes to {len(encoded)} bytes, over {MAX_VALUE_BYTES}")
    return encoded


def value_digest(value: Any) -> str:
    """SHA-1 of a value's encoding, as the repair script computes it ("" for ABSENT)."""
    if value is ABSENT:
        return ""
    try:
        return hashlib.sha1(encode_value(value).encode("ascii")).hexdigest()
    except (TypeError, ValueError):
        return "!"  # matches no digest: such an entry is dropped


def decode_value(fragment: bytes | str) -> Any:
    """Decode what ``encode_value`` produced; raise InvalidMessage otherwise."""
    try:
        pair = _parse(fragment)
    except (ValueError, RecursionError) as exc:
        raise InvalidMessage(f"value is not JSON: {exc}") from None
    return _value_from_pair(pair, fragment)


def _parse(raw: bytes | str) -> Any:
    """Strict JSON (UTF-8, no NaN); one shared decoder, since json.loads builds one per call."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    return _DECODER.decode(text)


def _value_from_pair(pair: Any, raw: bytes | str) -> Any:
    """Turn a parsed ``[tag, data]`` pair back into the value (``raw``: its source text)."""
    if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not int:
        raise InvalidMessage("value must be a [tag, data] pair")
    tag, data = pair
    if tag == 0:
        _check_depth(data, raw)
        return data
    if tag == 1 and type(data) is str:
        try:
            return base64.b64decode(data, validate=True)
        except binascii.Error:
            raise InvalidMessage("bytes value is not base64") from None
    raise InvalidMessage(f"unknown value tag {tag!r}")


def _check_depth(data: Any, raw: bytes | str) -> None:
    """The depth limit ``set()`` applies, applied to what peers decode too."""
    if _brackets(raw) <= MAX_DEPTH:
        return  # too few brackets to nest that deep: skip the walk
    level = [data] if type(data) in (list, dict) else []
    for _ in range(MAX_DEPTH):
        level = [
            item
            for node in level
            for item in (node.values() if type(node) is dict else node)
            if type(item) in (list, dict)
        ]
        if not level:
            return
    raise InvalidMessage(f"value nests deeper than {MAX_DEPTH} lists and dicts")


def _brackets(raw: bytes | str) -> int:
    """How many lists and objects ``raw`` opens at most (strings may hold some)."""
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{")
    return raw.count(b"[") + raw.count(b"{")


def _reject_constant(name: str) -> Any:
    """Refuse NaN and Infinity, which JSON itself does not allow."""
    raise InvalidMessage(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
# The C string encoder behind json.dumps, without its per-call Python wrapper.
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii


# -- messages --------------------------------------------------------------------


def message_prefix(namespace: str, src: str) -> str:
    """The part of every message a node sends that never changes."""
    return '{"p":"cachelab","v":2,"ns":' + json.dumps(namespace) + ',"src":' + json.dumps(src)


def message_head(prefix: str, op: str, key: str, fragment: str | None) -> str:
    """A message up to its tail; the store appends incarnation, seq (and tag)."""
    head = prefix + ',"op":"' + op + '","key":' + _quote(key)
    if fragment is not None:
        head += ',"val":' + fragment
    return head + ","


def message_tail(inc: str, seq: int) -> str:
    """What the store appends to a head: ``"inc":"…","seq":N``."""
    return '"inc":"' + inc + '","seq":' + str(seq)


def finish(body: str, signer: Signer | None) -> bytes:
    """Close a message: ``}``, or the tag over ``body`` and then ``}``."""
    data = body.encode("ascii")
    if signer is None:
        return data + b"}"
    return data + _TAG_PREFIX + signer.tag(data).encode("ascii") + b'"}'


def fits(head: str) -> bool:
    """Whether a message with this head stays within MAX_MESSAGE_BYTES once finished."""
    return len(head) + MAX_TAIL_BYTES <= MAX_MESSAGE_BYTES


def encode(msg: Message, signer: Signer | None = None) -> bytes:
    """Encode a whole message, as the store would (used by the simulator and by tests)."""
    fragment = None if msg.value is NO_VALUE else encode_value(msg.value)
    head = message_head(message_prefix(msg.ns, msg.src), msg.op, msg.key, fragment)
    return finish(head + message_tail(msg.inc, msg.seq), signer)


def decode(
    raw: bytes | str,
    namespace: str,
    signer: Signer | None = None,
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> Message:
    """Decode and validate one message of ``namespace``; raise InvalidMessage otherwise."""
    if len(raw) > max_bytes:
        raise InvalidMessage(f"message of {len(raw)} bytes exceeds {max_bytes}")
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if signer is not None:
        _authenticate(data, signer)
    try:
        obj = _parse(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidMessage(f"not JSON: {exc}") from None
    if type(obj) is not dict:
        raise InvalidMessage("a message is a JSON object")
    _check_envelope(obj, namespace, signer is not None)
    value = NO_VALUE if "val" not in obj else _value_from_pair(obj["val"], data)
    return Message(obj["ns"], obj["op"], obj["key"], obj["src"], obj["seq"], value, obj["inc"])


def _authenticate(data: bytes, signer: Signer) -> None:
    """Check the tag over everything before it, before parsing anything."""
    cut = len(data) - _SIGNED_SUFFIX
    if cut < 0 or data[cut : cut + len(_TAG_PREFIX)] != _TAG_PREFIX or data[-2:] != b'"}':
        raise Unauthenticated("message carries no tag, and this node has a secret")
    if not signer.verify(data[:cut], data[cut + len(_TAG_PREFIX) : -2]):
        raise Unauthenticated("message tag does not match (forged, or another secret)")


def _check_envelope(obj: dict[str, Any], namespace: str, signed: bool) -> None:
    """Validate every field but the value."""
    _check_protocol(obj)
    fields = obj.keys()
    extra = fields - _FIELDS
    if not fields >= _FIELDS or not extra <= _OPTIONAL:
        raise InvalidMessage(f"wrong fields {sorted(fields)}")
    if ("mac" in obj) != signed:
        why = "authenticated, and this node has no secret" if not signed else "not authenticated"
        raise Unauthenticated(f"message is {why}")
    if obj["ns"] != namespace:
        raise InvalidMessage(f"foreign namespace {obj['ns']!r}")
    op, seq = obj["op"], obj["seq"]
    if type(op) is not str or op not in OPS or ("val" in obj and op != "set"):
        raise InvalidMessage(f"bad op {op!r}")
    _check_text("key", obj["key"], MAX_KEY_CHARS)
    _check_text("src", obj["src"], MAX_SRC_CHARS)
    _check_text("inc", obj["inc"], MAX_INC_CHARS)
    if type(seq) is not int or not (0 if op in MARKERS else 1) <= seq <= MAX_SEQ:
        raise InvalidMessage("bad seq")


def _check_protocol(obj: dict[str, Any]) -> None:
    """Protocol name and version, named in the error (a v1 peer must be upgraded)."""
    version = obj.get("v")
    if obj.get("p") != PROTOCOL or type(version) is not int:
        raise InvalidMessage(f"not a {PROTOCOL} message")
    if version != VERSION:
        raise WrongVersion(f"{PROTOCOL} protocol version {version}; this node speaks {VERSION}")


def _check_text(name: str, value: Any, limit: int) -> None:
    """A non-empty string of at most ``limit`` characters."""
    if type(value) is not str or not 0 < len(value) <= limit:
        raise InvalidMessage(f"bad {name}")
