"""``hf-layer-tokclf push`` (and push_to_hub.py): a trained model on the Hub, verified before it is uploaded."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..sharing.hub import HubError
from .parsing import CommandParser, add_model_argument


def push_parser(prog: str = "hf-layer-tokclf push") -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=prog,
        description="Share a trained output directory as a Hugging Face Hub model repository. The folder is "
        "staged (safetensors weights, config.json with auto_map, the three code files, tokenizer files, a README.md "
        "model card; nothing else), loaded in a fresh Python process through the Auto classes and the pipeline "
        "with trust_remote_code=True and compared with the source model, and only then uploaded, in one commit.",
    )
    add_model_argument(parser, "A trained output directory (hf-layer-tokclf train --output-dir).")
    parser.add_argument("--repo-id", required=True, help="The Hub repository, OWNER/NAME; created if missing.")
    parser.add_argument("--private", action="store_true", help="Create the repository private.")
    parser.add_argument("--revision", default=None, help="A branch to commit to (created if missing; default main).")
    parser.add_argument("--commit-message", default=None, help="The commit's title.")
    parser.add_argument(
        "--dry-run", action="store_true", help="Stage and verify, print the files, upload nothing, keep the folder."
    )
    parser.add_argument("--staging-dir", default=None, help="Stage here (new or empty) instead of a temporary folder.")
    parser.add_argument(
        "--overwrite-staging-dir", action="store_true", help="Empty a --staging-dir that a previous run filled."
    )
    parser.add_argument(
        "--token", default=None, help="A Hub token with write access (default: HF_TOKEN, else `hf auth login`'s)."
    )
    parser.add_argument(
        "--no-custom-code",
        action="store_true",
        help="Share the stock form instead (as export-transformers writes it): the family's own "
        "*ForTokenClassification with the layers used, no code files, no auto_map; verified without "
        "trust_remote_code. The stock pipeline decodes each token on its own (argmax). Refused for models that "
        "pool several layers or have a CRF.",
    )
    return parser


def push_command(argv: Sequence[str] | None = None, prog: str = "hf-layer-tokclf push") -> int:
    """The command line of ``hf-layer-tokclf push`` and ``push_to_hub.py``: 0, 2 for user errors, 1 for the Hub's."""
    from ..sharing.hub import push_to_hub

    args = push_parser(prog).parse_args(None if argv is None else list(argv))
    try:
        push_to_hub(
            args.model,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            commit_message=args.commit_message,
            dry_run=args.dry_run,
            staging_dir=args.staging_dir,
            token=args.token,
            overwrite_staging=args.overwrite_staging_dir,
            custom_code=not args.no_custom_code,
        )
    except ValueError as error:
        print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except HubError as error:
        print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    return 0
