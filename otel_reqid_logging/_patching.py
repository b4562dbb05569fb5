"""Replace a class attribute, and put it back without cutting out later replacements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Patch"]


class Patch:
    """One reversible replacement of ``owner.name``.

    The replacement receives the original and a function telling whether the patch is
    still on. Removing the patch restores the original only while ours is still the
    attribute; when something replaced it after us (and may call ours), ours stays in
    place and merely forwards to the original from then on.
    """

    def __init__(
        self,
        owner: type,
        name: str,
        make: Callable[[Callable[..., Any], Callable[[], bool]], Callable[..., Any]],
    ) -> None:
        self.owner = owner
        self.name = name
        self._make = make
        self._original: Callable[..., Any] | None = None
        self._replacement: Callable[..., Any] | None = None
        self._on = False

    def apply(self) -> None:
        """Put the replacement in place (or switch a forwarding one back on)."""
        if self._on:
            return
        self._on = True
        if self._replacement is not None:
            return
        self._original = self.owner.__dict__[self.name]
        self._replacement = self._make(self._original, lambda: self._on)
        setattr(self.owner, self.name, self._replacement)

    def remove(self) -> None:
        """Take the replacement out, or make it forward when it is wrapped by now."""
        if not self._on:
            return
        self._on = False
        if self.owner.__dict__.get(self.name) is self._replacement:
            setattr(self.owner, self.name, self._original)
            self._replacement = None
