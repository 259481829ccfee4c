"""What an entity server runs and how it batches: plain values, importable without torch, FastAPI or Ray, so that
the command line, the application and a Ray replica share one description of a server."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..base.defaults import DEFAULT_DECODING, DEFAULT_STRATEGY

__all__ = ["BatchSettings", "ServerSettings"]


@dataclass(frozen=True)
class BatchSettings:
    """How concurrent requests are gathered into one run of the model (`batcher.Batcher`)."""

    max_wait_ms: float = 5.0
    """The longest a request waits for others to join its batch (0: never waits; the model takes what is queued)."""
    max_batch_tokens: int = 16384
    """A batch closes once its windows hold this many tokens; it also caps the padded tokens of one forward pass."""
    forward_batch_tokens: int | None = None
    """Padded tokens a forward pass holds at most: a batch runs as length-sorted passes of about this many (predict's
    --max-batch-tokens). ``None``: 1024 on the CPU, where padding costs as much as text and small passes cost little
    more per token (a batch of 64 random NCBI sentences in one pass ran at half the rate of sorted passes of 1024),
    and ``max_batch_tokens`` on a GPU."""
    max_batch_requests: int = 64
    """A batch closes once it holds this many requests; 1 turns batching off (one request per run of the model)."""
    max_concurrent_requests: int = 512
    """Requests admitted and not yet answered; one more is refused with 503 and ``Retry-After``."""


@dataclass(frozen=True)
class ServerSettings:
    """An entity server: the model it loads (with the caller's consent to run its code, as `predict`), how it
    decodes by default, what a request may hold, and how requests are batched."""

    model: str
    """A trained folder, a Hub id, or an ONNX folder written by ``export-onnx``."""
    device: str | None = "auto"
    """``auto``: the GPU when there is one, else the CPU (`loading.pick_device`)."""
    dtype: str = "auto"
    trust_remote_code: bool | None = None
    """The same consent as predict's --trust-remote-code: ``None`` reads ``HF_LAYER_TOKCLF_TRUST_REMOTE_CODE``."""
    num_threads: int | None = None
    """CPU threads of PyTorch (or of the ONNX runner); ``None``: torch's choice."""
    aggregation_strategy: str = DEFAULT_STRATEGY
    """The strategy of a request whose parameters name none."""
    decoding: str = DEFAULT_DECODING
    min_score: float | None = None
    tasks: tuple[str, ...] | None = None
    """A multi-task model's tasks to answer with (default: all)."""
    max_length: int | None = None
    """The window in subwords (default: the model's); longer texts are cut into overlapping windows, as predict does."""
    payload_limit: int = 2_000_000
    """The largest request body in bytes; a larger one gets 413."""
    max_client_batch_size: int = 32
    """The most texts one request may hold; more gets 413."""
    batching: BatchSettings = field(default_factory=BatchSettings)
