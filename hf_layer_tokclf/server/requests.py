"""A request to the entity server: the Inference API's token-classification body, read and checked."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EntityRequest", "RequestError"]


@dataclass(frozen=True)
class EntityRequest:
    """What one request asks: its texts and the pipeline parameters it gives (``None``: the server's default)."""

    texts: list[str]
    single: bool
    """The body's ``inputs`` was one string (answered with one list of entities), not a list of them."""
    aggregation_strategy: str
    ignore_labels: tuple[str, ...] | None = None
    stride: int | None = None


class RequestError(ValueError):
    """A request the server refuses: the HTTP ``status`` and a message naming the field, value or limit."""

    def __init__(self, status: int, message: str, *, error_type: str = "validation") -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
