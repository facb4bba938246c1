"""Authenticated messages: a shared secret, one derived key per namespace, HMAC-SHA1 tags.

The write script signs each message inside Redis, because only the script knows the
sequence number, and the tag must cover it (else a replay with another ``seq`` would
pass). Redis scripts offer SHA-1 alone (``redis.sha1hex``), so the tag is HMAC-SHA1: as
a MAC it rests on SHA-1 being a pseudo-random function, not on collision resistance
(RFC 6151 reasons the same way for HMAC-MD5). The script gets the derived key's two
pads, never the secret: anyone who can read commands on the server (MONITOR, SLOWLOG:
administrators) can forge messages of that namespace; mere publishers cannot.
"""

from __future__ import annotations

import hashlib
import hmac

from cachelab.errors import CachelabError

MIN_SECRET_BYTES = 16
TAG_CHARS = 40  # hex digits of an HMAC-SHA1 tag
_BLOCK = 64  # SHA-1's block size: the pads are one block each


class AuthenticationMismatch(CachelabError, ValueError):
    """The namespace and this node disagree about authentication (secret or none)."""


def secret_bytes(secret: bytes | str) -> bytes:
    """A secret as bytes; too short or of the wrong type raises."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not isinstance(secret, bytes):
        raise TypeError(f"secret must be bytes or str, not {type(secret).__name__}")
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"secret must have at least {MIN_SECRET_BYTES} bytes")
    return secret


class Signer:
    """The key of one namespace: tags messages, checks tags, and names itself by an id."""

    def __init__(self, secret: bytes | str, namespace: str) -> None:
        label = b"cachelab/v2 namespace " + namespace.encode("utf-8")
        self.key = hmac.new(secret_bytes(secret), label, hashlib.sha256).digest()
        block = self.key.ljust(_BLOCK, b"\0")
        self.ipad = bytes(b ^ 0x36 for b in block)
        self.opad = bytes(b ^ 0x5C for b in block)
        self.key_id = hmac.new(self.key, b"key id", hashlib.sha256).hexdigest()[:16]

    def tag(self, body: bytes) -> str:
        """The HMAC-SHA1 of ``body``, in lowercase hex (what the script computes)."""
        return hmac.new(self.key, body, hashlib.sha1).hexdigest()

    def verify(self, body: bytes, tag: bytes) -> bool:
        """Whether ``tag`` authenticates ``body`` (constant-time)."""
        return hmac.compare_digest(self.tag(body).encode("ascii"), tag)

    def __repr__(self) -> str:
        return f"<Signer key id {self.key_id}>"
