"""One base for every error cachelab raises, beside each error's built-in base."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import redis

import cachelab
from cachelab import CachelabError


def _errors() -> list[type[BaseException]]:
    """Every exception class defined in a module of the package (its __main__ aside)."""
    found = []
    for info in pkgutil.walk_packages(cachelab.__path__, "cachelab."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == info.name:
                found.append(cls)
    return found


def test_every_error_of_the_package_is_a_cachelab_error() -> None:
    errors = _errors()
    assert len(errors) >= 15  # the walk found the package's errors, not nothing
    assert [cls.__qualname__ for cls in errors if not issubclass(cls, CachelabError)] == []


def test_each_keeps_its_built_in_base() -> None:
    assert issubclass(cachelab.StripeMismatch, ValueError)
    assert issubclass(cachelab.BackendUnavailable, redis.ConnectionError)
    assert issubclass(cachelab.ReentrantLoad, RuntimeError)
    assert issubclass(cachelab.MissingExtra, ImportError)
