"""What a run carries besides its weights: seeds and RNG states, stop signals, the save folder, run info."""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from utils.checkpoint import CheckpointError
from utils.errors import UserError
from utils.files import atomic_write, git_commit

# Exit status of a run stopped by SIGTERM/SIGINT after saving model_latest.pth (128 + SIGTERM, as shells
# report a process killed by it): a scheduler must not take a pre-empted run for a finished one.
EXIT_STOPPED = 143


class TrainingError(UserError, RuntimeError):
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
    """SIGTERM/SIGINT handler: ask the loop to save model_latest.pth and stop at the next step.

    A second Ctrl-C stops at once (without saving), but only a deliberate one:
    a SIGINT within :attr:`REPEAT_S` seconds of the first signal is the same
    stop delivered twice, as when a scheduler signals every process of a job
    and ``torchrun`` passes its own copy on to the ranks.  ``signal_name`` is
    the first signal received.
    """

    REPEAT_S = 1.0

    def __init__(self):
        self.signal_name = None
        self._first_at = 0.0
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
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
            self._first_at = time.monotonic()
        elif signum == signal.SIGINT and time.monotonic() - self._first_at > self.REPEAT_S:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once

    @property
    def requested(self) -> bool:
        return self.signal_name is not None


try:
    import fcntl
except ImportError:  # Windows: the recorded process id is checked instead
    fcntl = None


class SessionLock:
    """Exclusive use of a session folder by one run, through ``<folder>/.lock``.

    The lock is an ``flock`` on the file, which the operating system drops when
    the process ends (``kill -9`` included), so a lock left by a dead run is
    stale and taken over.  The file records the holder (pid, host, start time)
    for the error message; where ``flock`` is unavailable the recorded process
    is checked instead (on the same host).
    """

    NAME = ".lock"

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self._file = None

    def acquire(self) -> None:
        try:
            f = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open while the run lasts
        except OSError as err:
            raise TrainingError(f"cannot create the lock file {self.path}: {err.strerror or err}") from None
        try:
            locked = _try_flock(f)
            f.seek(0)
            holder = _parse_holder(f.read())
            if locked is False or (locked is None and holder is not None and _alive(holder)):
                who = (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
                       if holder else "another process")
                raise TrainingError(
                    f"{self.folder} is in use by another run ({who}): two runs in one session folder would "
                    "overwrite each other's checkpoints. Wait for it to end, or give this run another "
                    f"MODEL.SESSION (if no such run exists, delete {self.path})")
            f.seek(0)
            f.truncate()
            f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
            f.flush()
        except BaseException:
            f.close()
            raise
        self._file = f

    def release(self) -> None:
        if self._file is None:
            return
        try:
            self._file.seek(0)
            self._file.truncate()  # an empty file: no holder, whatever the filesystem's locking
        except OSError:
            pass
        self._file.close()  # drops the flock
        self._file = None


def _try_flock(f) -> bool | None:
    """True when locked, False when another process holds the lock, None when locks are unsupported."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # e.g. ENOLCK/EOPNOTSUPP on some network filesystems
        return None
    return True


def _parse_holder(text: str) -> dict | None:
    try:
        holder = json.loads(text)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None


def _alive(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # cannot tell: assume the other machine's run is alive
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


_RESUME_ENTRIES = {"model": Mapping, "optimizer": Mapping, "scheduler": Mapping, "scaler": Mapping, "rng": Mapping,
                   "epoch": int, "global_step": int, "best_psnr": (int, float), "best_epoch": int,
                   "epochs_since_best": int}


def check_resume_state(ckpt: Mapping, path: Path) -> None:
    """Raise CheckpointError unless ``ckpt`` holds every entry a resume needs, of the right type."""
    problems = []
    for key, kind in _RESUME_ENTRIES.items():
        value = ckpt.get(key)
        if key not in ckpt:
            problems.append(f"{key} missing")
        elif not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            problems.append(f"{key} is {value!r:.40}")
    step = ckpt.get("step_in_epoch", 0)
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        problems.append(f"step_in_epoch is {step!r:.40}")
    losses = ckpt.get("epoch_losses", [])  # the stopped epoch's step losses (absent before they were saved)
    if not isinstance(losses, (list, tuple)) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                        for v in losses):
        problems.append(f"epoch_losses is {losses!r:.40}")
    if isinstance(ckpt.get("rng"), Mapping):
        problems += _rng_problems(ckpt["rng"])
    if problems:
        raise CheckpointError(f"{path}: cannot resume from it: {'; '.join(problems)}")


def _rng_problems(state: Mapping) -> list[str]:
    py, nump, tor = state.get("python"), state.get("numpy"), state.get("torch")
    problems = []
    if not (isinstance(py, (tuple, list)) and len(py) == 3 and isinstance(py[1], (tuple, list)) and len(py[1]) == 625
            and all(isinstance(v, int) for v in py[1])):
        problems.append("rng.python is not a random-module state")
    if not (isinstance(nump, (tuple, list)) and len(nump) == 5 and torch.is_tensor(nump[1]) and nump[1].numel() == 624
            and isinstance(nump[2], int) and isinstance(nump[3], int) and isinstance(nump[4], float)):
        problems.append("rng.numpy is not a numpy generator state")
    if not (torch.is_tensor(tor) and tor.dtype == torch.uint8 and tor.dim() == 1):
        problems.append("rng.torch is not a torch generator state")
    return problems


def check_optimizer_state(optimizer, scheduler, ckpt: Mapping, path: Path, schedule: str) -> None:
    """The optimizer and schedule states of ``ckpt`` must be those of this run's optimizer and schedule."""
    own, theirs = optimizer.state_dict(), ckpt["optimizer"]
    groups = theirs.get("param_groups")
    fits = (isinstance(groups, list) and isinstance(theirs.get("state"), Mapping)
            and len(groups) == len(own["param_groups"])
            and all(isinstance(g, Mapping) and isinstance(g.get("params"), list) and len(g["params"]) == len(o["params"])
                    for g, o in zip(groups, own["param_groups"])))
    if not fits:
        raise CheckpointError(f"{path}: its optimizer state does not fit this run's model and optimizer")
    if set(ckpt["scheduler"]) != set(scheduler.state_dict()):
        raise CheckpointError(f"{path}: its learning-rate schedule is not OPTIM.SCHEDULER {schedule!r} "
                              "(cannot resume with another schedule)")


def earlier_run(save_dir: Path, resume: bool) -> str | None:
    """Why a run must not start in ``save_dir``: it would replace an earlier run's checkpoints (None: it may)."""
    found = sorted(p.name for p in save_dir.glob("model_*.pth"))
    if not found or (resume and (save_dir / "model_latest.pth").is_file()):
        return None
    what = f"{save_dir} already holds a run ({', '.join(found[:4])}{' ...' if len(found) > 4 else ''})"
    if resume:
        return f"{what} but no model_latest.pth to continue from; move those files away to start afresh"
    return f"{what}; continue it with --resume, or start a new run with another MODEL.SESSION (or move that run away)"


def loader_error_message(err: Exception) -> str:
    """The original message of an error a DataLoader worker raised (PyTorch prefixes the worker's traceback)."""
    text = str(err).strip()
    if not text.startswith("Caught "):
        return text
    last = text.splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last else last
