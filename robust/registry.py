"""Name → constructor registries for datasets, architectures, defenses and attacks.

A registry replaces if/elif chains: adding a new attack is one decorator, and an
unknown name fails loudly with the list of valid names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from robust.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection filled by the ``register`` decorator."""

    def __init__(self, kind: str, key: str):
        self.kind = kind  # e.g. "attack", used in error messages
        self.key = key  # the params key that selects an entry, e.g. "attack.name"
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj
            return obj

        return decorate

    def get(self, name: str, key: str | None = None) -> T:
        """Look ``name`` up; ``key`` overrides the params key named in the error."""
        if not isinstance(name, str) or name not in self._entries:
            raise ConfigError(key or self.key, f"unknown {self.kind} {name!r}", self.names())
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
