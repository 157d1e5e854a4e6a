"""Name -> object registries that other packages extend through entry points.

Modelled on timm's registry: built-in entries register themselves on import, and a package
can add its own through the entry-point groups ``alignbench.models``,
``alignbench.model_families`` and ``alignbench.tasks`` (the entry point's object is called with
no arguments, or imported for its registration side effects).
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that no registry entry has."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0])


class Registry(Generic[T]):
    """A mapping from names to entries of one kind (models, model families or tasks)."""

    def __init__(self, kind: str, entry_point_group: str) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, T] = {}
        self._plugins_loaded = False

    def register(self, name: str, entry: T, *, overwrite: bool = False) -> T:
        """Add ``entry`` under ``name``; a second entry of the same name is an error."""
        if name in self._entries and not overwrite:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``"package.module:attribute"``, imported the first time ``name`` is used."""
        self.register(name, _Lazy(target))  # type: ignore[arg-type]

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@registry.decorator("name")`` registers the decorated object."""
        return lambda entry: self.register(name, entry)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            obj = ep.load()
            if callable(obj):
                obj()

    def get(self, name: str) -> T:
        """The entry called ``name``; an unknown name lists the closest known ones."""
        self._load_plugins()
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Run `alignbench list {self.kind}s` to see all."
            )
        entry = self._entries[name]
        if isinstance(entry, _Lazy):
            entry = self._entries[name] = entry.load()
        return entry

    def names(self) -> list[str]:
        """All registered names, sorted."""
        self._load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


class _Lazy:
    """A registry entry not imported yet."""

    def __init__(self, target: str) -> None:
        self.target = target

    def load(self) -> object:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)
