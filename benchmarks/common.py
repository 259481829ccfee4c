"""What every benchmark shares: the machine it ran on, and writing its Markdown + JSON atomically."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch
import transformers

from hf_layer_tokclf.files import atomic_writer, write_json


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_facts() -> dict[str, Any]:
    """The facts a timing needs beside it: processor, threads, library versions, load."""
    return {
        "device": "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "cpu_model": cpu_model(),
        "os_cpu_count": os.cpu_count(),
        "torch_version": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "transformers_version": transformers.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def write_results(output_dir: Path, name: str, markdown: str, data: dict[str, Any]) -> None:
    """Writes ``name.md`` and ``name.json`` under ``output_dir``, each atomically."""
    with atomic_writer(output_dir / f"{name}.md") as f:
        f.write(markdown)
    write_json(output_dir / f"{name}.json", data)
    print(f"wrote {output_dir / name}.md and .json")
