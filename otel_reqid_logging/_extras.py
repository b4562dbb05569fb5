"""The one-line error for a feature whose optional dependencies are not installed."""

from __future__ import annotations

__all__ = ["MissingExtraError"]


class MissingExtraError(ImportError):
    """An optional part of the library was used without the extra that installs it."""

    def __init__(self, feature: str, extra: str, error: ImportError) -> None:
        missing = error.name or "a module"
        super().__init__(
            f"{feature} needs the {extra} extra ({missing} is missing): "
            f"pip install 'otel-reqid-logging[{extra}]'",
            name=error.name,
        )
        self.extra = extra
