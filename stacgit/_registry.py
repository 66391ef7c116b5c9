"""A registry of plugin classes by name: built-in ones, ones registered in-process, and ones from
installed packages' entry points, loaded only when a name is not known yet (never at import)."""

from __future__ import annotations

import importlib.metadata
from typing import Generic, Iterable, TypeVar

from stacgit.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str, group: str, base: type, required: tuple[str, ...] = ("name",), builtin: Iterable[type] = ()):
        self.what, self.group, self.base, self.required = what, group, base, required
        self._items: dict[str, T] = {}
        self._plugins_loaded = False
        for cls in builtin:
            self.register(cls)

    def register(self, cls: type) -> None:
        if not (isinstance(cls, type) and issubclass(cls, self.base) and all(getattr(cls, a, None) for a in self.required)):
            raise TypeError(f"{cls!r} is not a {self.base.__module__}.{self.base.__name__} subclass with {', '.join(self.required)}")
        self._items[cls.name] = cls()  # type: ignore[attr-defined]

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in importlib.metadata.entry_points(group=self.group):
            if ep.name in self._items:
                continue
            try:
                self.register(ep.load())
            except Exception as exc:  # a broken plugin must not take stacgit down with a traceback
                raise ConfigError(f"{self.what} '{ep.name}' ({ep.value}) failed to load: {type(exc).__name__}: {exc}") from None

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._items)

    def get(self, name: str) -> T:
        if name not in self._items:
            self._load_plugins()
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(f"unknown {self.what} {name!r} (one of {', '.join(self.names()) or 'none registered'})") from None

    def loaded(self, with_plugins: bool = False) -> list[T]:
        """The registered items (with the entry points' too, loading them)."""
        if with_plugins:
            self._load_plugins()
        return list(self._items.values())

    def find(self, name: str) -> T | None:
        """The item registered as ``name`` so far (no plugin is loaded)."""
        return self._items.get(name)
