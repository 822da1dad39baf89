"""Name → class registries (models, losses, datasets) with errors that list the valid names."""
from __future__ import annotations

from collections.abc import Mapping


class Registry(dict):
    """A dict of ``name -> class`` whose lookups and builds fail with messages naming the valid choices."""

    def __init__(self, kind: str, entries: Mapping[str, type]):
        super().__init__(entries)
        self.kind = kind

    def names(self) -> list[str]:
        return sorted(self)

    def get_class(self, name: str) -> type:
        try:
            return self[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self.names())}") from None

    def build(self, name: str, **kwargs):
        """Instantiate ``name`` with ``kwargs``; an option the class does not take is a TypeError naming both."""
        cls = self.get_class(name)
        try:
            return cls(**kwargs)
        except TypeError as err:
            raise TypeError(f"bad options for {self.kind} {name}: {err}") from None
