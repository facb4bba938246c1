"""CachelabError: the one base of every error cachelab raises.

Each error keeps its built-in base too (``StripeMismatch`` is a ``ValueError``,
``BackendUnavailable`` a ``redis.ConnectionError``), so ``except CachelabError`` catches
everything of ours and nothing else, and code written against the built-in bases still works.
"""

from __future__ import annotations


class CachelabError(Exception):
    """Any error cachelab raises."""


class MissingExtra(CachelabError, ImportError):
    """An optional extra (``lab``, ``metrics``) is not installed."""
