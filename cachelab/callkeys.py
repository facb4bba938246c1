"""The key of one call of a cached function, built explicitly: never by hashing objects.

A key is a format over the call's arguments (bound to the signature, defaults applied),
or what a ``key=`` callable returns, or by default ``module.qualname(args as JSON)`` from
plain scalars only. ``cachelab.decorators`` says what each means to a user.
"""

from __future__ import annotations

import inspect
import json
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cachelab import validate

KeySpec = str | Callable[..., str] | None
_SCALARS = (str, int, float, bool, type(None))
_MISSING = object()
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class _KeyFormatter(string.Formatter):
    """``str.format`` that refuses to format anything but a str, int, float, bool or None."""

    def get_field(
        self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[Any, Any]:
        obj, used = super().get_field(field_name, args, kwargs)
        if type(obj) not in _SCALARS:
            raise TypeError(
                f"key field {{{field_name}}} is a {type(obj).__name__}: a key format may only "
                f"format str, int, float, bool or None (name an attribute, e.g. "
                f"{{{field_name}.id}}, or pass key= a callable returning str)"
            )
        return obj, used


_FORMATTER = _KeyFormatter()


class CallKey:
    """The key rule of one function: ``key(args, kwargs)`` gives a call's key, checked by
    cachelab's key rules. ``method``: the first parameter (``self``) is not numbered."""

    def __init__(
        self, func: Callable[..., Any], name: str, spec: KeySpec, method: bool
    ) -> None:
        self.name = name
        self._sig = inspect.signature(func)
        params = list(self._sig.parameters.values())
        if method and (not params or params[0].kind not in _POSITIONAL):
            raise TypeError(f"cached_method: {name} has no self parameter")
        self._skip = 1 if method else 0
        if isinstance(spec, str):
            try:
                list(string.Formatter().parse(spec))
            except ValueError as exc:
                raise ValueError(f"key format {spec!r} of {name}: {exc}") from None
        elif spec is not None and not callable(spec):
            raise TypeError(f"key must be a format str or a callable, not {type(spec).__name__}")
        self.spec = spec
        # The fast path: a call giving every parameter positionally, nothing else, to a
        # function of plain parameters, needs no signature binding; a format of plain fields
        # ({0}, {name}) needs no Python-level formatter. Both give the same keys as the rest.
        plain = all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
        self._arity = len(params) if plain else -1
        self._names = tuple(p.name for p in params)
        self._plain = _plain_fields(spec) if isinstance(spec, str) else None
        self._prefix = f"{getattr(func, '__module__', None) or '?'}.{name}"
        if spec is None:
            _unique_name(func, name)

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The key of one call, checked by cachelab's key rules."""
        spec = self.spec
        if spec is not None and not isinstance(spec, str):
            built = spec(*args, **kwargs)
            if type(built) is not str:
                raise TypeError(f"key= of {self.name} returned {type(built).__name__}, not str")
        elif not kwargs and len(args) == self._arity and (spec is None or self._plain is not None):
            built = self._quick_key(spec, args)
        else:
            built = self._bound_key(spec, args, kwargs)
        try:
            validate.key(built)
        except ValueError as exc:
            raise ValueError(f"the key {self.name} built is refused: {exc}") from None
        return built

    def _quick_key(self, spec: str | None, args: tuple[Any, ...]) -> str:
        """The key of a call that gives every (plain) parameter positionally."""
        given = args[self._skip :]
        if spec is None:
            pairs = zip(self._names[self._skip :], given, strict=True)
            return f"{self._prefix}({','.join(self._scalar(n, v) for n, v in pairs)})"
        named = dict(zip(self._names, args, strict=True))
        assert self._plain is not None
        for field in self._plain:
            if type(field) is int:
                value = given[field] if field < len(given) else _MISSING
            else:
                value = named.get(str(field), _MISSING)
            if type(value) not in _SCALARS:
                return self._bound_key(spec, args, {})  # the general path says what is wrong
        return spec.format(*given, **named)

    def _bound_key(self, spec: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The key of any call: bound to the signature, defaults applied."""
        bound = self._sig.bind(*args, **kwargs)
        bound.apply_defaults()
        if spec is None:
            return self._default_key(bound)
        positional, named = self._fields(bound)
        try:
            return _FORMATTER.vformat(spec, positional, named)
        except (IndexError, KeyError, AttributeError) as exc:
            raise ValueError(
                f"key format {spec!r} of {self.name} names what the call lacks: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    def _fields(self, bound: inspect.BoundArguments) -> tuple[list[Any], dict[str, Any]]:
        """Positional fields (self excluded) and named fields (self included) of a call."""
        positional: list[Any] = []
        named: dict[str, Any] = {}
        kinds = self._sig.parameters
        for i, (name, value) in enumerate(bound.arguments.items()):
            kind = kinds[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                positional.extend(value)
            elif kind is inspect.Parameter.VAR_KEYWORD:
                named.update(value)
            else:
                if kind in _POSITIONAL and i >= self._skip:
                    positional.append(value)
                named[name] = value
        return positional, named

    def _default_key(self, bound: inspect.BoundArguments) -> str:
        """``module.qualname(args as JSON)``, from plain scalars only."""
        parts: list[str] = []
        kinds = self._sig.parameters
        for i, (name, value) in enumerate(bound.arguments.items()):
            if i < self._skip:
                continue
            kind = kinds[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                parts.extend(self._scalar(name, item) for item in value)
            elif kind is inspect.Parameter.VAR_KEYWORD:
                parts.extend(f"{k}={self._scalar(k, value[k])}" for k in sorted(value))
            elif kind is inspect.Parameter.KEYWORD_ONLY:
                parts.append(f"{name}={self._scalar(name, value)}")
            else:
                parts.append(self._scalar(name, value))
        return f"{self._prefix}({','.join(parts)})"

    def _scalar(self, name: str, value: Any) -> str:
        """One argument of a default key, as JSON; anything but a plain scalar is refused."""
        if type(value) not in _SCALARS:
            raise TypeError(
                f"{self.name}: argument {name!r} is a {type(value).__name__}, and a default key "
                f"is built from str, int, float, bool and None only; pass key= (a format such "
                f"as 'user:{{0}}' or a callable returning str): cachelab never hashes objects"
            )
        return json.dumps(value, ensure_ascii=False)


def _unique_name(func: Callable[..., Any], name: str) -> None:
    """A default key is the function's name: refuse it where that name is not the function's
    alone, since two functions would then serve each other's results."""
    code = getattr(func, "__code__", None)
    captured = [v for v in getattr(code, "co_freevars", ()) if v != "__class__"]  # super()
    if getattr(func, "__name__", "") == "<lambda>":
        why = "a lambda has no name of its own (every lambda of a module would share keys)"
    elif captured:
        why = (f"it closes over {', '.join(captured)}: every copy made by its enclosing "
               "function would share its keys, whatever they captured")
    else:
        return
    raise ValueError(f"{name} needs key=: {why}")


def _plain_fields(spec: str) -> tuple[int | str, ...] | None:
    """The fields of a format that names each argument plainly (``{0}``, ``{name}``, with
    no conversion, attribute, item or nested field); None for any other format."""
    fields: list[int | str] = []
    for _, field, format_spec, conversion in string.Formatter().parse(spec):
        if field is None:
            continue
        if conversion is not None or "{" in (format_spec or ""):
            return None
        if field.isascii() and field.isdigit():
            fields.append(int(field))
        elif field.isidentifier():
            fields.append(field)
        else:
            return None
    return tuple(fields)
