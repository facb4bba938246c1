"""How a node turns values into what the store holds and back: one codec per strategy.

Versioned strategies store the JSON fragment of ``messages.encode_value``; ``tracking``
caches plain Redis strings that anyone writes, as the client returns them. The plans
(plans.py) call the codec, so no shell decides how a value is encoded.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cachelab.messages import ABSENT, MAX_VALUE_BYTES, decode_value, encode_value, value_digest

RawValue = str | bytes
_MUTABLE = (list, dict)
_RAW_TYPES = (str, bytes, int, float)


class Codec:
    """JSON fragments (``encode_value``): the versioned strategies' values."""

    def encode(self, value: Any) -> Any:
        """What the store holds for ``value``; TypeError or ValueError if it cannot."""
        return encode_value(value)

    def decode(self, stored: Any) -> Any:
        """The value of what the store holds (InvalidMessage if it is not ours)."""
        return decode_value(stored)

    def own_copy(self, value: Any, encoded: Any) -> Any:
        """The node's own copy of a mutable value, so the caller's later changes stay theirs."""
        return decode_value(encoded) if type(value) in _MUTABLE else value

    def digest(self, value: Any) -> str:
        """What ``Store.check`` gives for a held ``value`` ("" for a cached absence)."""
        return value_digest(value)


class RawCodec(Codec):
    """Plain Redis strings (``tracking``): str and bytes as they are, numbers as redis-py
    writes them; a read returns what the client decodes."""

    def encode(self, value: Any) -> RawValue:
        """The string Redis stores; TypeError for other types, ValueError when too long."""
        if type(value) not in _RAW_TYPES:
            raise TypeError(
                f"strategy 'tracking' stores plain Redis strings: str, bytes, int or float, "
                f"not {type(value).__name__}"
            )
        raw = value if isinstance(value, (str, bytes)) else repr(value)
        if len(raw) > MAX_VALUE_BYTES:
            raise ValueError(f"value larger than {MAX_VALUE_BYTES} bytes")
        return raw

    def decode(self, stored: Any) -> Any:
        """What the client's GET returned, as it is."""
        return stored

    def own_copy(self, value: Any, encoded: Any) -> Any:
        """The stored string itself: a read returns it, not the value given."""
        return encoded

    def digest(self, value: Any) -> str:
        """SHA-1 of the raw value (str as UTF-8), as ``TrackedKeys.digests`` computes it."""
        if value is ABSENT:
            return ""
        data = value.encode() if isinstance(value, str) else bytes(value)
        return hashlib.sha1(data).hexdigest()


JSON = Codec()
RAW = RawCodec()
