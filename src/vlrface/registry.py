"""Name → constructor registries (timm-style) for backbones, heads, scorers …

A registry is data: the CLI, config validation and docs list its names
instead of growing if-chains. It is a read-only mapping
(``BACKBONES["iresnet50"]``, ``.items()``, ``in``, ``len``) with ``build``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from .errors import UserError

T = TypeVar("T")


_MISSING: Any = object()


class UnknownNameError(UserError, KeyError):
    """An unknown registry name: a :class:`UserError` (one line, exit 2) that is also the mapping's ``KeyError``."""

    __str__ = Exception.__str__  # KeyError would quote the message


class Registry(Mapping[str, Callable[..., T]], Generic[T]):
    """A named collection of constructors with a helpful error for unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = fn
            return fn

        return deco

    def __getitem__(self, name: str) -> Callable[..., T]:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(sorted(self._items))}"
            ) from None

    def get(self, name: str, default: Any = _MISSING) -> Any:
        """``self[name]``; without ``default`` an unknown name is a :class:`UserError` listing the choices."""
        if default is not _MISSING and name not in self._items:
            return default
        return self[name]

    def build(self, name: str, **kwargs: Any) -> T:
        """``self[name](**kwargs)``; an option the constructor does not take is a :class:`UserError` naming it."""
        fn = self.get(name)
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):  # a builtin without a signature: the call decides
            params = None
        if params is not None and not any(p.kind is p.VAR_KEYWORD for p in params):
            takes = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            unknown = sorted(set(kwargs) - set(takes))
            if unknown:
                raise UserError(
                    f"{self.kind} {name!r} has no option {', '.join(map(repr, unknown))}; "
                    f"it takes: {', '.join(takes) or 'none'}"
                )
        try:
            return fn(**kwargs)
        except TypeError as e:  # an option passed on through **kwargs and refused further down
            m = re.search(r"unexpected keyword argument '(\w+)'", str(e))
            if m is None:
                raise
            raise UserError(f"{self.kind} {name!r} has no option {m.group(1)!r}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
