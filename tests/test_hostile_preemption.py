"""Hostile suite: pre-emption signals the whole process group, not only ``train.py``.

SLURM (``scancel``, the time limit, pre-emption), ``timeout``, systemd and a
terminal's Ctrl-C signal every process of a job.  The DataLoader workers get
the signal too; they must leave it to the main process, which saves
``model_latest.pth`` at the next step and exits 143 (no traceback, no worker
left behind), so that ``--resume`` continues the run.  Under ``torchrun`` the
launcher gets it as well and passes it on to the ranks.

Each run is a tiny DMSR with two persistent workers per process, started in a
session of its own (its own process group) and signalled, through the group,
once the first step is in ``train.log``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile_helpers import REPO, expect_ok, make_pairs, run_command, run_tool, tool_env, train_args

from training.run_state import StopRequest
from utils.checkpoint import load_checkpoint

needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").is_file(),
                                reason="process groups and /proc (Linux) are needed to signal a job and count its processes")

PAIRS, EPOCHS = 8, 2  # batch 1: 8 steps per epoch on one process, 4 per rank on two
RUN = Path("ck") / "Deraining" / "DMSR"


def _args(tmp_path: Path) -> list[str]:
    data = make_pairs(tmp_path / "train", n=PAIRS), make_pairs(tmp_path / "val", n=1)
    return train_args(*data, tmp_path / "ck", "OPTIM.BATCH_SIZE", "1", "OPTIM.NUM_EPOCHS", EPOCHS,
                      "TRAINING.NUM_WORKERS", "2", "TRAINING.LOG_EVERY", "1")


def _processes() -> dict[int, tuple[int, str]]:
    """``{pid: (parent pid, state)}`` of the live processes (from /proc)."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):  # the process ended while we looked
            continue
        if state != "Z":
            table[int(stat.parent.name)] = (int(parent), state)
    return table


def _descendants(pid: int) -> set[int]:
    table, found, todo = _processes(), set(), [pid]
    while todo:
        parent = todo.pop()
        children = {p for p, (pp, _) in table.items() if pp == parent}
        found |= children
        todo.extend(children)
    return found


def _signal_group_after_first_step(tmp_path: Path, cmd: list[str], sig: signal.Signals,
                                   children: int) -> tuple[int, str]:
    """Start ``cmd`` in a new process group, send ``sig`` to the group after the first step; (status, output).

    At least ``children`` processes (ranks, workers) must have been running under it, and none may outlive it.
    """
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    log = tmp_path / RUN / "train.log"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not (log.is_file() and " step 1/" in log.read_text()):
        time.sleep(0.05)
    try:
        assert proc.poll() is None, f"the run ended before its first step was signalled:\n{proc.communicate()[0]}"
        running = _descendants(proc.pid)
        os.killpg(proc.pid, sig)
        out, _ = proc.communicate(timeout=120)
    except (AssertionError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert len(running) >= children, f"only {len(running)} processes under the run when it was signalled"
    assert not running & set(_processes()), "processes of the stopped run are still alive"
    return proc.returncode, out


def _stopped_mid_epoch(tmp_path: Path, out: str, sig: signal.Signals, steps: int) -> None:
    assert "is killed by signal" not in out and "exited unexpectedly" not in out, out[-3000:]
    assert f"received {sig.name}: saved" in (tmp_path / RUN / "train.log").read_text()
    ckpt = load_checkpoint(tmp_path / RUN / "model_latest.pth")
    assert ckpt["epoch"] == 1 and 1 <= ckpt["step_in_epoch"] < steps, (ckpt["epoch"], ckpt["step_in_epoch"])


@needs_proc
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_the_group_saves_exits_143_and_resumes(sig, tmp_path):
    args = _args(tmp_path)
    rc, out = _signal_group_after_first_step(tmp_path, [sys.executable, str(REPO / "train.py"), *args], sig,
                                             children=2)
    assert rc == 143 and "Traceback" not in out, out[-3000:]
    _stopped_mid_epoch(tmp_path, out, sig, steps=PAIRS)
    if sig == signal.SIGTERM:  # the pre-empted job is started again and finishes
        expect_ok(run_tool("train", "--resume", *args, cwd=tmp_path))
        assert load_checkpoint(tmp_path / RUN / "model_latest.pth")["epoch"] == EPOCHS


def _torchrun(*args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            str(REPO / "train.py"), *args]


@needs_proc
def test_torchrun_signal_to_the_group_saves_and_resumes(tmp_path):
    """torchrun runs each rank in a process group of its own and passes a stop on to each rank's group.

    The workers of both ranks are signalled whether the signal reached only torchrun or, as here, its group.
    """
    args = _args(tmp_path)
    _, out = _signal_group_after_first_step(tmp_path, _torchrun(*args), signal.SIGTERM, children=2 + 2 * 2)
    _stopped_mid_epoch(tmp_path, out, signal.SIGTERM, steps=PAIRS // 2)
    # torchrun reports the signal it got with a traceback of its own (and exits 1); no rank fails.
    assert out.count("Traceback") == out.count("SignalException: Process"), out[-3000:]
    assert "exitcode" not in out, out[-3000:]  # no rank reported as failed
    run = run_command(_torchrun("--resume", *args), cwd=tmp_path, timeout=300)
    expect_ok(run)
    assert load_checkpoint(tmp_path / RUN / "model_latest.pth")["epoch"] == EPOCHS


def test_the_same_stop_delivered_twice_is_one_request():
    """A scheduler's SIGINT plus torchrun's copy must not count as the user's second Ctrl-C (stop unsaved)."""
    before = signal.getsignal(signal.SIGINT)
    stop = StopRequest()
    stop.install()
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGINT):
            os.kill(os.getpid(), sig)
        assert stop.requested and stop.signal_name == "SIGINT"
        stop.REPEAT_S = 0.0  # later than the window: a deliberate second Ctrl-C stops at once
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        stop.uninstall()
    assert signal.getsignal(signal.SIGINT) is before
