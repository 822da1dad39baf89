"""Shared pieces of the hostile-input suite (``tests/test_hostile_*.py``).

Every case runs one command-line tool as a user would and checks what the
issue asks of each bad input or fault: the exit status, a message naming the
culprit, no Python traceback, a bounded time, and that the user's files are
intact (no partial ``.tmp`` left either).

:func:`run_tool` runs the tool's script in this process by default, exactly
as ``python script.py ARGS`` would run it (its ``__main__`` block, hence
``run_cli`` and its exit statuses), with its output captured, an uncaught
exception printed as the interpreter prints it, and every piece of global
state a tool may touch put back afterwards (see :class:`_GlobalState`).  A
case costs milliseconds instead of the ~3 s a new interpreter spends
importing torch.  Unreadable paths are tested as ``nobody`` (``as_nobody``):
as root, this process takes that user for the run (see
:func:`_without_root`), or, where ``nobody`` cannot read the interpreter or
the project (a Python under /root), one interpreter started once as
``nobody`` runs those cases (:class:`_NobodyWorker`).  What needs a process of its own keeps one:
interpreter options (``python_args``) and anything a test asks for with
``subprocess=True`` (exit statuses on signals, import-time behaviour); such
tests may also call :func:`run_command` (torchrun, a run stopped mid-way).

The odd files are built here: PNGs with giant headers or corrupt streams
under valid checksums, malicious pickles, unreadable paths and a small full
filesystem (a tmpfs, where the machine lets root mount one).
"""
from __future__ import annotations

import atexit
import contextlib
import gc
import hashlib
import io
import logging
import multiprocessing
import os
import pickle
import random
import runpy
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TOOLS = {
    "train": "train.py",
    "test": "test.py",
    "derain": "derain.py",
    "evaluate": "evaluate.py",
    "make_demo_data": "scripts/make_demo_data.py",
    "build_store": "scripts/build_store.py",
    "weights": "scripts/weights.py",
    "leaderboard": "scripts/leaderboard.py",
    "check_data": "scripts/check_data.py",
    "compare": "scripts/compare.py",
    "convert_mspfn_tf": "scripts/convert_mspfn_tf.py",
    "complexity": "scripts/complexity.py",
    "ablate": "scripts/ablate.py",
}
TIMEOUT = 180  # a case that takes longer is a hang
NOBODY = 65534


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def tool_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def unprivileged(cmd: list[str]) -> list[str]:
    """``cmd`` run without root's right to read and write everything (unreadable paths are tested so).

    As root the command runs in a user namespace as an unprivileged user
    mapped onto root: it can still run the interpreter, but permission bits
    apply to it (``chmod 000`` denies reading, ``0o555`` writing).  As anyone
    else nothing needs to change.
    """
    if os.geteuid() != 0:
        return cmd
    wrapper = ["unshare", "--user", f"--map-user={NOBODY}", f"--map-group={NOBODY}", "--"]
    probe = subprocess.run([*wrapper, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot drop root's file permissions here (unshare --user failed)")
    return [*wrapper, *cmd]


class _CannotDropRoot(Exception):
    """This process cannot run the tool as ``nobody``: no right to change its user, or the code is out of
    ``nobody``'s reach (a clone in a private folder); a subprocess in a user namespace does it instead."""


@contextlib.contextmanager
def _without_root(script: Path):
    """This process as ``nobody`` for the length of one in-process run: permission bits apply to it.

    The real and effective user and group become ``nobody`` (what ``os.access``
    and every open see, as for a user's own process); the saved ones stay
    root's, which is how they are given back afterwards, even when the run
    fails.  Raises :class:`_CannotDropRoot` where ``nobody`` could not read
    ``script`` or the Python packages it imports.  As anyone but root nothing
    changes.
    """
    if os.geteuid() != 0:
        yield
        return
    uids, gids, groups = os.getresuid(), os.getresgid(), os.getgroups()

    def give_back():
        os.setresuid(*uids)
        os.setresgid(*gids)
        os.setgroups(groups)

    try:
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, gids[2])
        os.setresuid(NOBODY, NOBODY, uids[2])
    except PermissionError:
        with contextlib.suppress(PermissionError):  # whatever part of the change was allowed
            give_back()
        raise _CannotDropRoot from None
    code = [script, *(Path(m.__file__).parent for m in (torch, os, np))]
    if not all(os.access(p, os.R_OK) for p in code):
        give_back()
        raise _CannotDropRoot
    try:
        yield
    finally:
        give_back()


def run_tool(tool: str, *args, cwd: Path, timeout: float = TIMEOUT, as_nobody: bool = False,
             python_args: tuple = (), subprocess: bool = False) -> Run:
    """Run one of :data:`TOOLS` with ``args`` in ``cwd``, as ``python <script> ARGS`` would.

    In this process (see :func:`run_in_process`) unless the case asks for a
    process of its own with ``subprocess=True`` (signals, import-time
    behaviour) or gives interpreter options (``python_args``).  ``as_nobody``
    runs the tool without root's file access (unreadable paths): in this
    process as ``nobody``, or in a subprocess in a user namespace where this
    process may not change its user.
    """
    script = REPO / TOOLS[tool]
    if not (python_args or subprocess):
        try:
            return run_in_process(script, list(map(str, args)), cwd=cwd, timeout=timeout, as_nobody=as_nobody)
        except _CannotDropRoot:
            return _NobodyWorker.get().run(script, list(map(str, args)), cwd=cwd, timeout=timeout)
    cmd = [sys.executable, *python_args, str(script), *map(str, args)]
    return run_command(unprivileged(cmd) if as_nobody else cmd, cwd=cwd, timeout=timeout)


class _NobodyWorker:
    """One interpreter, started once per test session as ``nobody`` in a user namespace, that runs the
    ``as_nobody`` cases this process cannot run as ``nobody`` itself (:class:`_CannotDropRoot`: the
    interpreter or the project out of ``nobody``'s reach, as under ``/root``).

    It runs each case with :func:`run_in_process`, as this process would, in the caller's environment of
    the moment; a new interpreter per case would spend ~2 s importing torch.  The jobs and their results
    travel on two pipes of their own, so nothing a tool prints can mix with them.
    """

    _current: _NobodyWorker | None = None
    GRACE = 60  # seconds past a case's own time limit before the worker itself is taken for hung

    def __init__(self):
        from multiprocessing.connection import Connection

        job_read, job_write = os.pipe()
        result_read, result_write = os.pipe()
        cmd = unprivileged([sys.executable, str(Path(__file__).resolve()), "--serve", str(job_read),
                            str(result_write)])
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=tool_env(), pass_fds=(job_read, result_write),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(job_read)
        os.close(result_write)
        self.jobs, self.results = Connection(job_write, readable=False), Connection(result_read, writable=False)

    @classmethod
    def get(cls) -> _NobodyWorker:
        if cls._current is None or cls._current.proc.poll() is not None:
            cls._current = cls()
            atexit.register(cls._current.close)
        return cls._current

    def close(self) -> None:
        self.jobs.close()
        self.results.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def run(self, script: Path, argv: list[str], cwd: Path, timeout: float) -> Run:
        # for conftest's record of the tests that use ../shared, as a subprocess.Popen event would be
        sys.audit("tests.nobody_worker", sys.executable, [str(script), *argv], str(cwd))
        self.jobs.send((str(script), argv, str(cwd), timeout, tool_env()))
        if not self.results.poll(timeout + self.GRACE):
            self.proc.kill()
            pytest.fail(f"hang: {script.name} {' '.join(argv)} still running after {timeout} s (as nobody)")
        try:
            kind, value = self.results.recv()
        except EOFError:
            pytest.fail(f"the interpreter running cases as nobody ended (exit status {self.proc.wait()})")
        if kind == "failed":
            pytest.fail(value)
        return Run(*value)


def _serve(job_fd: int, result_fd: int) -> None:
    """The worker's loop (``python hostile_helpers.py --serve JOB_FD RESULT_FD``): run each job in this
    process until the job pipe closes."""
    from multiprocessing.connection import Connection

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    jobs, results = Connection(job_fd, writable=False), Connection(result_fd, readable=False)
    while True:
        try:
            script, argv, cwd, timeout, env = jobs.recv()
        except EOFError:
            return
        os.environ.clear()
        os.environ.update(env)
        try:
            run = run_in_process(Path(script), argv, cwd=Path(cwd), timeout=timeout)
        except pytest.fail.Exception as exc:  # a hang, reported as run_in_process reports it
            results.send(("failed", str(exc.msg)))
        else:
            results.send(("ran", (run.rc, run.stdout, run.stderr, run.seconds)))


def run_command(cmd: list[str], cwd: Path, timeout: float = TIMEOUT) -> Run:
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hang: {' '.join(cmd)} still running after {timeout} s")
    return Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


class _Hang(BaseException):
    """Raised by the timer in a tool that runs past its time (a BaseException: no tool may swallow it)."""


@contextlib.contextmanager
def _deadline(seconds: float):
    """Raise :class:`_Hang` in the main thread after ``seconds`` (what a subprocess's timeout does)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def ring(signum, frame):
        raise _Hang

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """The interpreter's warning output, to the tool's (captured) stderr rather than to pytest's record."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


class _GlobalState:
    """What a tool's run may change in its process, saved before and put back after an in-process run.

    A fresh interpreter starts each tool with no logging handlers, default
    warning filters and this project's environment; a test in pytest has
    other values, and the next test must not see what the tool left (its
    signal handlers, deterministic-algorithm switch, logger levels, seeds).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE,
               signal.SIGCHLD)
    TORCH_FLAGS = (  # (object, attribute) pairs a tool may switch
        (torch.backends.cudnn, "benchmark"), (torch.backends.cudnn, "deterministic"),
        (torch.backends.cudnn, "enabled"), (torch.backends.cudnn, "allow_tf32"),
        (torch.backends.cuda.matmul, "allow_tf32"), (torch.backends.mkldnn, "enabled"))

    def __init__(self):
        root = logging.getLogger()
        self.cwd = os.getcwd()
        self.argv, self.path, self.environ = list(sys.argv), list(sys.path), dict(os.environ)
        self.umask = os.umask(0o022)
        os.umask(self.umask)
        self.excepthooks = sys.excepthook, threading.excepthook
        self.handlers, self.level = list(root.handlers), root.level
        self.loggers = {name: (lg.level, lg.disabled, list(lg.handlers), lg.propagate)
                        for name, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
        self.raise_exceptions, self.disable = logging.raiseExceptions, logging.root.manager.disable
        self.signals = {sig: signal.getsignal(sig) for sig in self.SIGNALS}
        self.threads, self.grad = torch.get_num_threads(), torch.is_grad_enabled()
        self.deterministic = (torch.are_deterministic_algorithms_enabled(),
                              torch.is_deterministic_algorithms_warn_only_enabled())
        self.dtype, self.matmul = torch.get_default_dtype(), torch.get_float32_matmul_precision()
        self.anomaly = torch.is_anomaly_enabled()
        self.flags = [getattr(obj, name) for obj, name in self.TORCH_FLAGS]
        self.rng = random.getstate(), np.random.get_state(), torch.get_rng_state()

    @staticmethod
    def fresh_process() -> None:
        """Make this process look, to a tool, like the interpreter it would start in."""
        root = logging.getLogger()
        for handler in list(root.handlers):  # pytest's capture handlers: basicConfig must install its own
            root.removeHandler(handler)
        root.setLevel(logging.WARNING)
        for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
            os.environ.pop(key, None)
        warnings.resetwarnings()  # the interpreter's default filters, printing to the tool's stderr
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
        warnings.showwarning = _print_warning

    def restore(self) -> None:
        os.chdir(self.cwd)
        sys.argv[:], sys.path[:] = self.argv, self.path
        if dict(os.environ) != self.environ:
            os.environ.clear()
            os.environ.update(self.environ)
        os.umask(self.umask)
        sys.excepthook, threading.excepthook = self.excepthooks
        root = logging.getLogger()
        for handler in list(root.handlers):
            if handler not in self.handlers:
                root.removeHandler(handler)
                handler.close()
        root.handlers[:] = self.handlers
        root.setLevel(self.level)
        for name, (level, disabled, handlers, propagate) in self.loggers.items():  # new ones are left as made
            lg = logging.getLogger(name)
            for handler in lg.handlers:
                if handler not in handlers:
                    handler.close()
            if lg.level != level:
                lg.setLevel(level)  # also clears the loggers' cached levels
            lg.disabled, lg.handlers[:], lg.propagate = disabled, handlers, propagate
        logging.raiseExceptions = self.raise_exceptions
        logging.disable(self.disable)
        for sig, handler in self.signals.items():
            if handler is not None:
                signal.signal(sig, handler)
        torch.set_num_threads(self.threads)
        torch.set_grad_enabled(self.grad)
        torch.use_deterministic_algorithms(self.deterministic[0], warn_only=self.deterministic[1])
        torch.set_default_dtype(self.dtype)
        torch.set_float32_matmul_precision(self.matmul)
        torch.autograd.set_detect_anomaly(self.anomaly)
        for (obj, name), value in zip(self.TORCH_FLAGS, self.flags):
            setattr(obj, name, value)
        random.setstate(self.rng[0])
        np.random.set_state(self.rng[1])
        torch.set_rng_state(self.rng[2])


def _exit_status(code, stderr) -> int:
    """What the interpreter makes of ``SystemExit(code)``: None is 0, text is printed and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=stderr)
    return 1


def run_in_process(script: Path, argv: list[str], cwd: Path, timeout: float = TIMEOUT,
                   as_nobody: bool = False) -> Run:
    """``python script ARGV`` in ``cwd``, run in this process; ``as_nobody`` without root's file access.

    The script's ``__main__`` block runs as the interpreter would run it
    (``run_cli`` and its exit statuses included); ``SystemExit`` becomes the
    exit status, an uncaught exception its traceback on stderr and status 1,
    and a run past ``timeout`` seconds fails the test as a hang.
    """
    out, err = io.StringIO(), io.StringIO()
    saved = _GlobalState()
    start = time.monotonic()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            _GlobalState.fresh_process()
            os.chdir(cwd)
            sys.argv[:] = [str(script), *argv]
            try:
                with _without_root(script) if as_nobody else contextlib.nullcontext(), _deadline(timeout):
                    runpy.run_path(str(script), run_name="__main__")
                rc = 0
            except SystemExit as exc:
                rc = _exit_status(exc.code, err)
            except _CannotDropRoot:
                raise
            except _Hang:
                pytest.fail(f"hang: {script.name} {' '.join(argv)} still running after {timeout} s")
            except KeyboardInterrupt:  # the interpreter prints it, then ends by SIGINT
                traceback.print_exc(file=err)
                rc = -signal.SIGINT
            except BaseException:  # an uncaught exception: the interpreter prints it and exits 1
                traceback.print_exc(file=err)
                rc = 1
    finally:
        saved.restore()
        if multiprocessing.active_children():  # data-loader workers the run left to the collector: end them
            gc.collect()
    return Run(rc, out.getvalue(), err.getvalue(), time.monotonic() - start)


def expect_error(run: Run, *culprits, rc: int = 1) -> None:
    """A clean failure: exit status ``rc``, no traceback, each culprit named on stderr."""
    assert "Traceback" not in run.output, run.output[-3000:]
    assert run.rc == rc, f"exit status {run.rc}, expected {rc}:\n{run.output[-3000:]}"
    for culprit in culprits:
        assert str(culprit) in run.stderr, f"{culprit!r} not named in:\n{run.stderr[-3000:]}"


def expect_ok(run: Run) -> None:
    assert "Traceback" not in run.output, run.output[-3000:]
    assert run.rc == 0, f"exit status {run.rc}:\n{run.output[-3000:]}"


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (to prove user files intact)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- files

def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth-ish random uint8 RGB image (compresses like a photo, not like noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3)).astype(np.uint8)
    return np.ascontiguousarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR))


def png_bytes(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[..., ::-1]))
    assert ok
    return buf.tobytes()


def write_png(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(img))
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_header_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A few hundred bytes whose (valid) header claims ``width`` x ``height`` RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    text = _chunk(b"tEXt", b"Comment\0" + b"a valid PNG header over almost no data " * 8)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + text
            + _chunk(b"IDAT", zlib.compress(b"\0" * 301)) + _chunk(b"IEND", b""))


def corrupt_stream_png(img: np.ndarray) -> bytes:
    """A PNG whose chunk checksums are all valid but whose compressed pixel stream is garbage mid-way."""
    data = png_bytes(img)
    out, pos = bytearray(data[:8]), 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], bytearray(data[pos + 8:pos + 8 + length])
        if kind == b"IDAT":
            mid = len(body) // 2
            body[mid:mid + 64] = bytes(b ^ 0x5A for b in body[mid:mid + 64])
        out += _chunk(kind, bytes(body))
        pos += 12 + length
    return bytes(out)


def truncated_png(img: np.ndarray) -> bytes:
    return png_bytes(img)[:150]


BAD_IMAGES = {  # name -> bytes maker of an image file no tool may choke on
    "huge-header": lambda: huge_header_png(),
    "corrupt-stream": lambda: corrupt_stream_png(rgb(64, 64, 7)),
    "truncated": lambda: truncated_png(rgb(64, 64, 7)),
    "empty": lambda: b"",
    "text": lambda: b"this is not an image, whatever its name says\n",
}


def make_pairs(root: Path, n: int = 3, size: tuple[int, int] = (70, 76), seed: int = 0) -> Path:
    """``root/input`` and ``root/target`` with ``n`` pairs of PNGs named 000.png ..."""
    for i in range(n):
        clean = rgb(*size, seed=seed + i)
        rain = np.clip(clean.astype(int) + np.random.default_rng(i).integers(0, 60, clean.shape), 0, 255)
        write_png(root / "target" / f"{i:03d}.png", clean)
        write_png(root / "input" / f"{i:03d}.png", rain.astype(np.uint8))
    return root


def make_results(root: Path, n: int = 2, set_name: str = "Rain100L") -> tuple[Path, Path]:
    """``(results, gt)``: ``gt/<set>/{input,target}`` with ``n`` pairs and ``results/<set>`` holding the rainy
    inputs as "results" (so they score like the rainy input)."""
    gt = make_pairs(root / "gt" / set_name, n=n)
    res = root / "res" / set_name
    res.mkdir(parents=True)
    for p in (gt / "input").iterdir():
        (res / p.name).write_bytes(p.read_bytes())
    return root / "res", root / "gt"


class _RunsCode:
    """Unpickling this runs ``touch marker`` - what a malicious checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def malicious_pickle(path: Path, marker: Path, torch_format: bool) -> Path:
    payload = {"state_dict": _RunsCode(marker)}
    if torch_format:
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    return path


def save_ours(path: Path, model_name: str = "DMSR", kwargs: dict | None = None, state: dict | None = None,
              **extra) -> Path:
    """A checkpoint in this project's format (``format: dmsr-derain``) of a tiny model."""
    from models import build_model
    from utils.checkpoint import FORMAT_NAME, save_checkpoint

    kwargs = {"base_channels": 8, "num_res": 1} if kwargs is None else kwargs
    if state is None:
        torch.manual_seed(0)
        state = build_model(model_name, **kwargs).state_dict()
    save_checkpoint({"format": FORMAT_NAME, "version": 1, "model_name": model_name, "model_kwargs": kwargs,
                     "model": state, "ema": None, **extra}, path)
    return path


# ----------------------------------------------------------------------------- environment

@pytest.fixture
def world() -> Path:
    """A folder every user can enter and write (the tools may run as ``nobody`` in it)."""
    folder = Path(tempfile.mkdtemp(prefix="hostile-"))
    folder.chmod(0o777)
    yield folder
    for p in folder.rglob("*"):
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o777)
    shutil.rmtree(folder, ignore_errors=True)


def open_to_all(*paths: Path) -> None:
    """Make folders writable by ``nobody`` (files stay as they are)."""
    for path in paths:
        for p in [path, *path.rglob("*")]:
            if p.is_dir():
                p.chmod(0o777)


def lock_out(path: Path) -> None:
    """Make ``path`` unreadable (and a folder unlistable) for anyone but root."""
    path.chmod(0)


@pytest.fixture
def small_fs(tmp_path):
    """``make(kib)`` mounts a tmpfs of that size and returns its folder; skipped where mounting is not allowed."""
    mounted = []

    def make(kib: int) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("a small full filesystem needs root to mount a tmpfs")
        folder = tmp_path / f"fs{len(mounted)}"
        folder.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k,mode=0777", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path, leave: int = 0) -> None:
    """Fill the filesystem of ``folder`` up to ``leave`` bytes."""
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    if leave:
        size = (folder / "filler").stat().st_size
        os.truncate(folder / "filler", max(size - leave, 0))


def train_args(train_dir: Path, val_dir: Path, save_dir: Path, *extra) -> list[str]:
    """train.py arguments for a tiny DMSR run (seconds per epoch on a CPU core)."""
    return ["--device", "cpu", "--opts", "MODEL.ARGS.base_channels", "8", "MODEL.ARGS.num_res", "1",
            "OPTIM.BATCH_SIZE", "2", "OPTIM.WARMUP_EPOCHS", "0", "OPTIM.NUM_EPOCHS", "1",
            "TRAINING.NUM_WORKERS", "0", "TRAINING.TRAIN_PS", "64", "TRAINING.VAL_PS", "32",
            "TRAINING.VAL_SAVE_EVERY", "0", "TRAINING.TRAIN_DIR", str(train_dir), "TRAINING.VAL_DIR", str(val_dir),
            "TRAINING.SAVE_DIR", str(save_dir), *map(str, extra)]


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    _serve(int(sys.argv[2]), int(sys.argv[3]))
