"""What the scripts in ``benchmarks/`` share: machine description, peak memory, timing, output.

Each benchmark prints a table and can write the same figures as JSON
(``--json FILE``), with :func:`machine_info` alongside so that figures from
different machines are never compared unknowingly.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from utils.files import atomic_write, git_commit

log = logging.getLogger(__name__)

_PROC_STATUS = Path("/proc/self/status")
_PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device | str) -> dict:
    """The machine and software the figures come from."""
    from utils.precision import cpu_has_fast_bf16

    device = torch.device(device)
    info = {
        "device": str(device),
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_has_fast_bf16(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    info["git_commit"] = git_commit(short=True)
    return info


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work, so wall-clock timings cover it (a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _status_kb(field: str) -> int | None:
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class PeakMemory:
    """Peak memory over a stretch of code, in MB.

    CUDA: ``torch.cuda.max_memory_allocated`` (tensors only).  CPU on Linux:
    the process's peak resident set (``VmHWM``, reset through
    ``/proc/self/clear_refs``) minus its resident set at :meth:`start`, i.e.
    the memory the code needed beyond what was already resident.  Memory
    that the process freed earlier but the C library kept can be reused
    without showing up, so measure in a fresh process (the benchmarks run
    each variant in its own).  Elsewhere None (not measured).
    """

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.base_kb: int | None = None

    def start(self) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            _PROC_CLEAR_REFS.write_text("5")  # resets VmHWM to the current resident set
        except OSError:
            self.base_kb = None
            return
        self.base_kb = _status_kb("VmRSS")

    def peak_mb(self) -> float | None:
        if self.device.type == "cuda":
            synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        peak = _status_kb("VmHWM")
        if self.base_kb is None or peak is None:
            return None
        return (peak - self.base_kb) / 1024

    @staticmethod
    def process_peak_rss_mb() -> float | None:
        """The whole process's peak resident set since it started (None where unknown)."""
        try:
            import resource
        except ImportError:  # not on Windows
            return None
        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def time_calls(fn: Callable[[], object], device: torch.device | str, warmup: int, repeats: int) -> list[float]:
    """Seconds taken by each of ``repeats`` calls of ``fn``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def format_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A Markdown table (floats with 3 significant digits past the point where sensible)."""

    def cell(v) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str | os.PathLike | None, data: dict) -> None:
    """Write ``data`` as indented JSON to ``path`` (nothing when ``path`` is None)."""
    if path is None:
        return
    atomic_write(path, json.dumps(data, indent=2) + "\n")
    log.info("wrote %s", path)


def emit_report(report: dict, path: str | os.PathLike | None) -> dict:
    """Print a benchmark's report as one JSON line (after its table) and write it to ``path`` when given."""
    fast = report.get("results", {}).get("fast") or {}
    if fast.get("switches"):
        print("fast switches: " + " ".join(fast["switches"]))
    print(json.dumps(report))
    write_json(path, report)
    return report


def run_isolated(script: str | os.PathLike, argv: Sequence[str]) -> dict:
    """Run ``python script *argv`` in a fresh process and return the JSON object on its last stdout line.

    Used to measure each variant in its own process: peak memory, thread
    pools, autocast caches and compiled graphs of one variant cannot leak
    into the next.
    """
    cmd = [sys.executable, str(script), *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{' '.join(cmd)} printed nothing:\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


def add_variant_arguments(parser) -> None:
    """The options every plain-vs-fast benchmark shares: model, device, variants, fast switches, seed, output."""
    import argparse

    parser.add_argument("--model", default="DMSR", help="registered model name (default: %(default)s)")
    parser.add_argument("--model-opts", "--model_opts", nargs="*", default=None, metavar="KEY=VALUE",
                        help="model constructor options for both variants, e.g. base_channels=16 num_res=2")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--variants", nargs="+", default=["plain", "fast"], choices=["plain", "fast"],
                        help="what to measure (default: both)")
    parser.add_argument("--fast-opts", nargs="+", default=None, metavar="KEY VALUE",
                        help="config overrides of the fast variant (default: training.config.fast_opts for the device)")
    parser.add_argument("--compile", action="store_true", help="add FAST.COMPILE True to the fast variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--in-process", action="store_true", help="measure every variant in this process")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one variant
