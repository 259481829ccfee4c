"""What every benchmark shares: the machine it ran on, and writing its Markdown + JSON atomically."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
import transformers

from hf_layer_tokclf.files import atomic_writer, write_json

CONTENDED_CORES = 0.15  # other processes' average CPU use above which a table is flagged


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries the report."""
    print(message, file=sys.stderr, flush=True)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync(device: torch.device) -> None:
    """Waits for queued GPU work, so that a timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


class CpuShare:
    """CPU used by *other* processes (and stolen by the hypervisor) while timing, in cores.

    Busy time of the whole machine from /proc/stat minus this process's own CPU time, divided by
    wall time: near 0 means the timings had the machine to themselves.
    """

    def __init__(self) -> None:
        self.start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, float, float] | None:
        try:
            with open("/proc/stat", encoding="utf-8") as handle:
                values = [int(v) for v in handle.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        hz = os.sysconf("SC_CLK_TCK")
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        steal = values[7] if len(values) > 7 else 0
        busy = sum(values[:8]) - idle
        own = os.times()
        return time.perf_counter(), busy / hz, steal / hz, own.user + own.system

    def stop(self) -> dict[str, float] | None:
        end = self._snapshot()
        if self.start is None or end is None:
            return None
        wall = end[0] - self.start[0]
        busy, steal, own = (end[i] - self.start[i] for i in (1, 2, 3))
        return {
            "other_processes_cores": max(0.0, busy - own) / wall,
            "steal_cores": steal / wall,
            "own_cores": own / wall,
        }


def contention_lines(cpu: dict[str, float] | None) -> list[str]:
    if cpu is None:
        return []
    text = (
        f"While timing, other processes used {cpu['other_processes_cores']:.2f} cores on average "
        f"(hypervisor steal {cpu['steal_cores']:.2f}; this benchmark {cpu['own_cores']:.2f})."
    )
    if shared_machine(cpu):
        text += " **The machine was shared: absolute times are inflated and ratios noisier; rerun when idle.**"
    return [text, ""]


def shared_machine(cpu: dict[str, float] | None) -> bool:
    return cpu is not None and cpu["other_processes_cores"] + cpu["steal_cores"] > CONTENDED_CORES


def ratio_cell(value: float | None) -> str:
    """A ratio to three decimals, or a dash where none exists (its baseline read zero)."""
    return "—" if value is None else f"{value:.3f}"
