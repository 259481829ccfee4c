"""What a sweep is told: the defaults (`SWEEP_DEFAULTS`), `SweepSettings` and the checks that run
before any work."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...base.defaults import SWEEP_DEFAULTS  # noqa: F401 - the sweep modules import it from here
from ...running.decoding import DEFAULT_DECODING, check_decoding
from .extract import CACHE_DTYPES, CACHES


def check_settings(
    cache: str, cache_dir: Any, cache_dtype: str, epochs: int | None, tolerance: float, **sizes: Any
) -> None:
    """Raises `ValueError` naming the first bad setting; each of ``sizes`` must be positive where given."""
    if cache not in CACHES:
        raise ValueError(f"cache={cache!r} is unknown; expected one of {CACHES}")
    if cache_dir is not None and cache != "disk":
        raise ValueError("a cache directory needs cache='disk' (--cache disk)")
    if cache_dtype not in CACHE_DTYPES:
        raise ValueError(f"cache_dtype={cache_dtype!r} is unknown; expected one of {tuple(CACHE_DTYPES)}")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs must be a positive int (or None for automatic), got {epochs!r}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 F1 points, got {tolerance}")
    for name, value in sizes.items():
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")


# What `SweepResult.settings` starts with, in this order.
_RECORDED = (
    "epochs",
    "learning_rate",
    "batch_size",
    "probe_batch_size",
    "max_length",
    "stride",
    "cache",
    "cache_dtype",
    "seed",
    "decoding",
)


@dataclass
class SweepSettings:
    """The settings of one `sweep` (its keyword arguments, documented there), checked when made."""

    epochs: int | None
    learning_rate: float
    batch_size: int
    probe_batch_size: int
    max_length: int | None
    stride: int | None
    cache: str
    cache_dir: str | Path | None
    cache_dtype: str
    tolerance: float
    seed: int
    progress: bool
    device: str | None
    dtype: str
    decoding: str = DEFAULT_DECODING

    def __post_init__(self) -> None:
        check_decoding(self.decoding)
        check_settings(
            self.cache,
            self.cache_dir,
            self.cache_dtype,
            self.epochs,
            self.tolerance,
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            probe_batch_size=self.probe_batch_size,
            max_length=self.max_length,
        )

    def recorded(self) -> dict[str, Any]:
        """The settings a `SweepResult` records as given (device and dtype it records as what they led to)."""
        return {name: getattr(self, name) for name in _RECORDED}
