"""The optional extras (``lab``, ``metrics``): a missing one is named with its pip command."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cachelab.errors import MissingExtra


@contextmanager
def needs_extra(extra: str, module: str) -> Iterator[None]:
    """Turn a third-party module missing inside the block into an ImportError naming ``extra``."""
    try:
        yield
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if not missing or missing == "cachelab":
            raise  # one of cachelab's own modules is missing: a broken install, no extra helps
        raise MissingExtra(
            f"{module} needs the {extra} extra: pip install 'cachelab[{extra}]' "
            f"(missing: {missing})",
            name=missing,
        ) from exc
