"""What a run carries besides its weights: seeds and RNG states, stop signals, the save folder, run info."""
from __future__ import annotations

import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

from utils.files import atomic_write, git_commit

# Exit status of a run stopped by SIGTERM/SIGINT after saving model_latest.pth (128 + SIGTERM, as shells
# report a process killed by it): a scheduler must not take a pre-empted run for a finished one.
EXIT_STOPPED = 143


class TrainingError(RuntimeError):
    """Training cannot go on (persistent NaN loss, unwritable save folder, ...)."""


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_writable(folder: Path) -> None:
    """Fail at start-up, naming the folder, when checkpoints could not be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write_test_{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise TrainingError(f"cannot write to the save folder {folder}: {err.strerror or err}") from None


def write_run_info(path: Path, config_dump: str, argv: list[str]) -> None:
    """``config.yaml``: the resolved config headed by the command line, git commit and date."""
    header = (f"# command: {' '.join([Path(sys.argv[0]).name] + list(argv))}\n"
              f"# git commit: {git_commit()}\n"
              f"# written: {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    atomic_write(path, header + config_dump)


class StopRequest:
    """SIGTERM/SIGINT handler: ask the loop to save model_latest.pth and stop at the next step."""

    def __init__(self):
        self.signal_name = None
        self._previous = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame):
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.signal_name = signal.Signals(signum).name

    @property
    def requested(self) -> bool:
        return self.signal_name is not None
