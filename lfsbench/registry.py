"""One small generic registry (methods, and anything else chosen by name), with did-you-mean errors."""

from __future__ import annotations

import difflib
from typing import Generic, TypeVar

from lfsbench.errors import LfsbenchError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> object, filled by a decorator where each object is defined."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str):
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        if name not in self._items:
            close = difflib.get_close_matches(name, self._items, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise LfsbenchError(
                f"Unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(sorted(self._items))} "
                f"(`lfsbench ls {self.kind}s` describes them)."
            )
        return self._items[name]

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self):
        return sorted(self._items.items())

    def in_order(self) -> list[T]:
        """The registered objects in the order they were registered (where order decides, e.g. name matching)."""
        return list(self._items.values())
