#!/usr/bin/env python
"""Share a trained hf-layer-tokclf model on the Hugging Face Hub, after checking it loads like a stranger would.

    python push_to_hub.py runs/my-model --repo-id you/my-model --dry-run   # stage, verify, list the files
    python push_to_hub.py runs/my-model --repo-id you/my-model             # then upload, in one commit

A thin layer over `hf_layer_tokclf.cli.push.push_command` (also `hf-layer-tokclf push`), which calls
`hf_layer_tokclf.sharing.hub.push_to_hub`; `--help` lists the options.
"""

import sys

from hf_layer_tokclf.cli.push import push_command

if __name__ == "__main__":
    sys.exit(push_command(sys.argv[1:], prog="push_to_hub.py"))
