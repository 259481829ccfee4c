"""``hf-layer-tokclf serve``: an entity server (`server.app`) for a trained model or an ONNX folder, on this machine
(uvicorn) or replicated with Ray Serve (`server.ray_serve`); the model's location and the consent to run its code
are checked before the port is bound, as predict checks them before it reads a document."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..base.extras import require
from ..base.redaction import scrub_text
from .options import add_decoding_option, add_device_options, add_trust_option, at_least_one, probability
from .parsing import CommandParser, add_model_argument

if TYPE_CHECKING:
    from ..server.settings import ServerSettings


def serve_parser() -> argparse.ArgumentParser:
    from ..base.defaults import STRATEGIES
    from ..server.settings import BatchSettings, ServerSettings

    parser = CommandParser(
        prog="hf-layer-tokclf serve",
        description="Serve a model's entities over HTTP, as the Hugging Face Inference API's token-classification "
        'task: POST / (or /predict) {"inputs": "text" | ["text", ...], "parameters": {"aggregation_strategy", '
        '"ignore_labels", "stride"}} answers predict\'s entities, so that huggingface_hub.InferenceClient('
        "base_url=...).token_classification(text) works against it; GET /health, /info and /metrics (Prometheus). "
        "Concurrent requests are batched into one run of the model. Needs the serve extra.",
    )
    add_model_argument(parser, "A trained output directory, a Hub id, or an ONNX folder from export-onnx.")
    parser.add_argument(
        "--host", default="127.0.0.1", help="The address to listen on (default: 127.0.0.1, this machine only)."
    )
    parser.add_argument("--port", type=port, default=8080, help="The port (default: 8080; 0: any free one).")
    batching = parser.add_argument_group("Batching (the names of text-embeddings-inference's options)")
    defaults = BatchSettings()
    batching.add_argument(
        "--max-wait-ms", type=non_negative, default=defaults.max_wait_ms, metavar="MS",
        help="The longest a request waits for others to join its batch (default: %(default)s; 0: never waits).",
    )  # fmt: skip
    batching.add_argument(
        "--max-batch-tokens", type=at_least_one, default=defaults.max_batch_tokens, metavar="N",
        help="A batch closes at this many tokens of windows (default: %(default)s).",
    )  # fmt: skip
    batching.add_argument(
        "--forward-batch-tokens", type=at_least_one, default=None, metavar="N",
        help="A batch runs as length-sorted forward passes of at most N padded tokens (predict's --max-batch-tokens; "
        "default: 1024 on the CPU, where padding costs as much as text, and --max-batch-tokens on a GPU).",
    )  # fmt: skip
    batching.add_argument(
        "--max-batch-requests", type=at_least_one, default=defaults.max_batch_requests, metavar="N",
        help="A batch closes at this many requests (default: %(default)s; 1 turns batching off).",
    )  # fmt: skip
    batching.add_argument(
        "--max-concurrent-requests", type=at_least_one, default=defaults.max_concurrent_requests, metavar="N",
        help="Requests admitted and not yet answered; one more gets 503 with Retry-After (default: %(default)s).",
    )  # fmt: skip
    limits, server = parser.add_argument_group("Limits of a request"), ServerSettings(model="")
    limits.add_argument(
        "--max-client-batch-size", type=at_least_one, default=server.max_client_batch_size, metavar="N",
        help="The most texts one request may hold; more gets 413 (default: %(default)s).",
    )  # fmt: skip
    limits.add_argument(
        "--payload-limit", type=at_least_one, default=server.payload_limit, metavar="BYTES",
        help="The largest request body; a larger one gets 413 (default: %(default)s).",
    )  # fmt: skip
    _add_answer_options(parser, STRATEGIES, server.aggregation_strategy)
    add_device_options(parser)  # an ONNX folder from export-onnx runs on the CPU with onnxruntime
    parser.add_argument(
        "--num-threads", type=at_least_one, default=None,
        help="CPU threads of PyTorch, or of an ONNX folder's onnxruntime (default: torch's choice).",
    )  # fmt: skip
    add_trust_option(parser)
    _add_ray_options(parser)
    return parser


def _add_answer_options(parser: argparse.ArgumentParser, strategies: Sequence[str], strategy: str) -> None:
    """How entities are found when a request does not say: predict's options of the same names."""
    parser.add_argument(
        "--aggregation-strategy", choices=strategies, default=strategy,
        help="The strategy of a request whose parameters name none (default: %(default)s).",
    )  # fmt: skip
    add_decoding_option(parser)
    parser.add_argument(
        "--min-score", type=probability, default=None, help="Leave out entities scoring below this (0 to 1)."
    )
    parser.add_argument(
        "--tasks", default=None, metavar="NAME,NAME",
        help="A multi-task model's tasks to answer with, comma-separated (default: all); each entity says its task.",
    )  # fmt: skip
    parser.add_argument(
        "--max-length",
        type=at_least_one,
        default=None,
        metavar="N",
        help="The window in subwords (default: the model's); a longer text is cut into overlapping windows, as "
        "predict does, not truncated.",
    )


def _add_ray_options(parser: argparse.ArgumentParser) -> None:
    """``--engine`` and the options of ``--engine ray`` (read by `ray_serve.run_ray_serve`)."""
    group = parser.add_argument_group("Ray Serve (pip install 'hf-layer-tokclf[ray]')")
    group.add_argument(
        "--engine", choices=["local", "ray"], default="local",
        help="local = this process (uvicorn); ray = a Ray Serve deployment of the same application, --replicas "
        "copies of the model behind one port.",
    )  # fmt: skip
    group.add_argument("--replicas", type=at_least_one, default=1, help="Copies of the model (default: 1).")
    group.add_argument(
        "--ray-address", default=None,
        help="The Ray cluster to run on (auto, HEAD_IP:6379, ray://HEAD_IP:10001); default: as ray.init() does.",
    )  # fmt: skip
    group.add_argument("--ray-num-cpus", type=float, default=None, help="CPUs per replica (Ray's default: 1).")
    group.add_argument(
        "--ray-num-gpus", type=float, default=0, help="GPUs per replica (0.5 puts two on a GPU; default: 0)."
    )


def port(value: str) -> int:
    """A TCP port (0 to 65535; 0: the system picks a free one), else argparse's error naming it."""
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0 to 65535)")
    return int(value)


def non_negative(value: str) -> float:
    """A number of at least 0 (--max-wait-ms), else argparse's error naming it."""
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a number of at least 0")
    return number


def serve_settings(args: argparse.Namespace) -> ServerSettings:
    """The `settings.ServerSettings` of serve's options."""
    from ..running.tasks import parse_tasks
    from ..server.settings import BatchSettings, ServerSettings

    tasks = parse_tasks(args.tasks)
    return ServerSettings(
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        num_threads=args.num_threads,
        aggregation_strategy=args.aggregation_strategy,
        decoding=args.decoding,
        min_score=args.min_score,
        tasks=tuple(tasks) if tasks else None,
        max_length=args.max_length,
        payload_limit=args.payload_limit,
        max_client_batch_size=args.max_client_batch_size,
        batching=BatchSettings(
            max_wait_ms=args.max_wait_ms,
            max_batch_tokens=args.max_batch_tokens,
            forward_batch_tokens=args.forward_batch_tokens,
            max_batch_requests=args.max_batch_requests,
            max_concurrent_requests=args.max_concurrent_requests,
        ),
    )


def check_servable(model: str, trust_remote_code: bool | None) -> None:
    """Refuses, before the port is bound, what predict refuses before it loads: a missing extra, a model that is not
    there, and one whose own code would run without the caller's consent (`code_consent.check_consent`)."""
    from ..base.code_consent import check_consent
    from ..base.locations import check_model_location
    from ..running.onnx_runner import check_onnx_extra

    check_onnx_extra(model, "serve")
    check_model_location(model)
    if Path(model).exists():
        check_consent(model, trust_remote_code)


def serve_command(argv: Sequence[str]) -> int:
    args = serve_parser().parse_args(list(argv))
    require("serve", "hf-layer-tokclf serve")
    if args.engine == "ray":
        require("ray", "serve --engine ray")
    settings = serve_settings(args)
    check_servable(args.model, args.trust_remote_code)
    from ..server.app import ModelLoadError, run_local

    try:
        if args.engine == "ray":
            _run_ray(settings, args)
        else:
            run_local(settings, args.host, args.port)
    except ModelLoadError as error:  # logged with its traceback by the server; here one line, and status 1
        print(f"hf-layer-tokclf serve: error: {scrub_text(str(error))}", file=sys.stderr)
        return 1
    return 0


def _run_ray(settings: ServerSettings, args: argparse.Namespace) -> None:
    """``--engine ray``: the server on Ray Serve (`ray_serve.run_ray_serve`), until SIGTERM or Ctrl-C."""
    from ..server.ray_serve import run_ray_serve

    run_ray_serve(
        settings, host=args.host, port=args.port, replicas=args.replicas, address=args.ray_address,
        num_cpus=args.ray_num_cpus, num_gpus=args.ray_num_gpus,
    )  # fmt: skip
