"""``python -m hf_layer_tokclf``: the same as the ``hf-layer-tokclf`` command."""

import sys

from .cli.main import main

sys.exit(main())
