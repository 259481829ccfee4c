"""Loading a model: a trained folder, a Hub id or an ONNX serving folder, with the caller's consent before any code
of the folder runs; the device and precision it runs in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..base.code_consent import RemoteCodeError, check_consent, may_run_code
from ..base.locations import CHECKPOINT_GLOB, check_model_location
from ..base.manifest import METRICS
from .onnx_runner import OnnxTokenClassifier, is_onnx_dir


def load_model(
    model_dir: str | Path,
    *,
    device: str | None = None,
    dtype: str = "auto",
    trust_remote_code: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """Loads a token classifier and its tokenizer from a trained output directory or a Hub id.

    A serving folder written by `export.export_onnx` gives a `onnx_runner.OnnxTokenClassifier` (CPU).
    ``device``: ``None`` or ``"cpu"`` runs on the CPU; ``"cuda"`` on the GPU with sdpa attention;
    ``"auto"`` on the GPU when there is one. ``dtype``: see `pick_dtype` (``"auto"``: float32 on
    the CPU, bfloat16 or float16 on a GPU).

    Models of this package (and transformers' own) load with the installed classes, and their folder's
    code never runs; code shipped for a class nobody installed runs only with the caller's consent,
    as `code_consent.may_run_code` decides (``trust_remote_code=True``, or ``None`` and the
    ``HF_LAYER_TOKCLF_TRUST_REMOTE_CODE`` environment variable): without it a `RemoteCodeError` says
    so, and nothing from the folder is executed.
    """
    from transformers import AutoModelForTokenClassification

    from ..model.auto import register_auto_classes
    from ..model.tokenization import load_tokenizer

    register_auto_classes()  # this package's model types load with the installed classes
    path = Path(model_dir)
    if is_onnx_dir(path):
        return OnnxTokenClassifier.load(path, trust_remote_code=trust_remote_code)
    target = pick_device(device)
    kwargs = {"dtype": pick_dtype(target, dtype), **kwargs}
    if target.type == "cuda":
        kwargs.setdefault("attn_implementation", "sdpa")
    # A mistyped folder is said as one, not as the Hub error transformers would give for it.
    location = {key: kwargs[key] for key in ("revision", "token", "cache_dir") if key in kwargs}
    check_model_location(model_dir, **location)
    if path.exists():
        check_consent(path, trust_remote_code)
    # An explicit bool (never None): transformers would otherwise ask on a terminal, and a yes runs the code.
    trusted = may_run_code(model_dir, trust_remote_code)
    try:
        model = AutoModelForTokenClassification.from_pretrained(str(model_dir), trust_remote_code=trusted, **kwargs)
        tokenizer = load_tokenizer(model_dir, trust_remote_code=trust_remote_code)
    except Exception as error:
        if isinstance(error, ValueError) and not trusted and "trust_remote_code" in str(error):
            raise RemoteCodeError(model_dir) from None
        unfinished = _unfinished(path, error)
        if unfinished is not None:
            raise unfinished from error
        raise
    return model.to(target).eval(), tokenizer


def _unfinished(path: Path, error: Exception) -> ValueError | None:
    """The error for a folder a killed run left with checkpoints and an incomplete final model, or None."""
    checkpoints = sorted(p.name for p in path.glob(CHECKPOINT_GLOB)) if path.is_dir() else []
    if not checkpoints or (path / METRICS).exists():
        return None
    reason = " ".join(str(error).split())[:200]
    return ValueError(
        f"{path}: the model here is incomplete ({type(error).__name__}: {reason}). It holds checkpoints "
        f"({', '.join(checkpoints)}) and no metrics.json: training did not finish; run it again with --resume."
    )


def pick_device(device: str | None = None) -> torch.device:
    """``"auto"``: the GPU when there is one, else the CPU; ``None``: the CPU; else that device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device or "cpu")


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def pick_dtype(device: torch.device, dtype: str = "auto", *, bf16_supported: bool | None = None) -> torch.dtype:
    """The precision a model runs in on ``device``.

    ``"auto"``: float32 on the CPU; on a GPU bfloat16 where it runs natively (Ampere and newer),
    else float16 (T4, V100: bfloat16 there is emulated and slow, or unsupported). Any other value
    is taken as asked: ``"float32"``, ``"float16"``, ``"bfloat16"``. ``bf16_supported`` overrides
    the probe of the GPU (`torch.cuda.is_bf16_supported`, without emulation).
    """
    if dtype != "auto":
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r} is unknown; expected auto or one of {', '.join(DTYPES)}.")
        return DTYPES[dtype]
    if device.type != "cuda":
        return torch.float32
    if bf16_supported is None:
        try:
            bf16_supported = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # a torch without the argument never counted emulation
            bf16_supported = torch.cuda.is_bf16_supported()
    return torch.bfloat16 if bf16_supported else torch.float16
