"""Running a study's variants: one ``train.py`` run each, then ``test.py`` on the study's test sets.

Launchers (no scheduler of our own):

* ``local`` - one variant after another on this machine, each a ``train.py``
  process (``--resume`` when its session folder holds a checkpoint);
* ``torchrun`` - the same, each run under ``torchrun --standalone --nproc_per_node N``;
* ``slurm`` - one SLURM job per unfinished variant through submitit (an
  optional dependency, imported only here).  A job runs this same runner for
  its one variant (``scripts/ablate.py STUDY --only VARIANT``) on the node, so
  it trains, resumes after a pre-emption and scores exactly as a local run.

Re-running a study skips finished variants (``study_done.json`` in their
session folder, for the same config) and resumes interrupted ones.  A stop
signal (SIGTERM/SIGINT) is passed on to the running ``train.py``, which saves
``model_latest.pth``; the runner then exits with status 143 like ``train.py``.
"""
from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from utils.errors import UsageError
from utils.files import atomic_write

from .run_state import EXIT_STOPPED
from .study import DONE_FILE, Study, StudyError, Variant, finished

REPO = Path(__file__).resolve().parents[1]
LAUNCHERS = ("local", "torchrun", "slurm")
log = logging.getLogger("ablate")


class StudyStopped(Exception):
    """A stop signal ended the study; the running variant saved its checkpoint (exit status 143)."""


@dataclass
class LaunchOptions:
    launcher: str = "local"
    nproc: int = 1
    device: str | None = None
    fast: bool = False
    # slurm
    partition: str | None = None
    time_min: int = 24 * 60
    gpus: int = 1
    cpus: int = 8
    account: str | None = None
    python: str = sys.executable


def train_command(study: Study, v: Variant, opts: LaunchOptions, resume: bool) -> list[str]:
    """The ``train.py`` command line of a variant (under torchrun with ``--launcher torchrun``)."""
    cmd = [opts.python]
    if opts.launcher == "torchrun":
        cmd += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={opts.nproc}"]
    cmd += [str(REPO / "train.py"), "--config", str(study.config_path(v))]
    if opts.device:
        cmd += ["--device", opts.device]
    if opts.fast:
        cmd.append("--fast")
    if resume:
        cmd.append("--resume")
    return cmd


def weights_of(study: Study, v: Variant) -> Path | None:
    """The checkpoint a variant is scored with: its best (by validation), else its last."""
    for name in ("model_best.pth", "model_latest.pth"):
        if (study.run_dir(v) / name).is_file():
            return study.run_dir(v) / name
    return None


def test_command(study: Study, v: Variant, opts: LaunchOptions) -> list[str]:
    """The ``test.py`` command scoring a variant's checkpoint on the study's test sets."""
    out = study.results_dir(v)
    cmd = [opts.python, str(REPO / "test.py"), "--weights", str(weights_of(study, v)),
           "--input_dir", str(study.test["input_dir"]), "--result_dir", str(out),
           "--json", str(out / "scores.json"), "--csv", str(out / "scores.csv")]
    if study.test.get("datasets"):
        cmd += ["--datasets", *study.test["datasets"]]
    if study.test.get("tile") is not None:
        cmd += ["--tile", str(study.test["tile"])]
    if opts.device:
        cmd += ["--device", opts.device]
    return cmd


def scored(study: Study, v: Variant) -> bool:
    """Whether the variant's scores exist and are newer than the checkpoint they score."""
    scores, weights = study.scores_path(v), weights_of(study, v)
    return scores.is_file() and weights is not None and scores.stat().st_mtime >= weights.stat().st_mtime


class _Child:
    """Runs one command; a SIGTERM/SIGINT to the runner is passed on to it as SIGTERM (it saves and stops)."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.stop_signal: str | None = None
        self._previous = {}

    def _handle(self, signum, frame):
        self.stop_signal = signal.Signals(signum).name
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def run(self, cmd: list[str]) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        try:
            try:
                self.proc = subprocess.Popen(cmd)
            except OSError as err:
                raise StudyError(f"cannot start {cmd[0]}: {err.strerror or err}") from None
            return self.proc.wait()  # a signal runs the handler, and the wait goes on (PEP 475)
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            self.proc = None


def run_local(study: Study, variants: list[Variant], opts: LaunchOptions) -> None:
    """Train (or resume) and score each variant in turn on this machine."""
    child = _Child()
    for k, v in enumerate(variants, 1):
        tag = f"[{k}/{len(variants)}] {v.name}"
        if finished(study, v):
            log.info("%s: finished earlier, not trained again", tag)
        else:
            resume = (study.run_dir(v) / "model_latest.pth").is_file()
            cmd = train_command(study, v, opts, resume)
            log.info("%s: %s - %s", tag, "resuming" if resume else "training", shlex.join(cmd))
            started = time.time()
            code = child.run(cmd)
            if code == EXIT_STOPPED or child.stop_signal:
                raise StudyStopped(f"{tag}: stopped ({child.stop_signal or 'by a signal'}); its checkpoint is "
                                   f"in {study.run_dir(v)} - run the same command again to resume")
            if code != 0:
                raise StudyError(f"{tag}: train.py failed (exit status {code}); see "
                                 f"{study.run_dir(v) / 'train.log'} and the lines above")
            atomic_write(study.run_dir(v) / DONE_FILE, json.dumps(
                {"digest": v.digest, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                 "sitting_s": round(time.time() - started, 1)}) + "\n")
        if study.test and not scored(study, v):
            if weights_of(study, v) is None:
                raise StudyError(f"{tag}: no checkpoint in {study.run_dir(v)} to score")
            cmd = test_command(study, v, opts)
            log.info("%s: scoring %s", tag, shlex.join(cmd))
            code = child.run(cmd)
            if child.stop_signal:
                raise StudyStopped(f"{tag}: stopped while scoring; run the same command again")
            if code != 0:
                raise StudyError(f"{tag}: test.py failed (exit status {code}); see the lines above")


def slurm_command(study: Study, v: Variant, opts: LaunchOptions) -> list[str]:
    """What a variant's SLURM job runs: this runner, for that variant, on the node."""
    inner = "torchrun" if opts.gpus > 1 else "local"
    cmd = [opts.python, str(REPO / "scripts" / "ablate.py"), str(study.source.resolve()), "--only", v.name,
           "--launcher", inner, "--out", str(study.folder.parent.resolve()), "--no-report"]
    if inner == "torchrun":
        cmd += ["--nproc", str(opts.gpus)]
    if opts.fast:
        cmd.append("--fast")
    return cmd


def _submitit():
    try:
        import submitit
    except ImportError:
        raise UsageError("--launcher slurm needs submitit, which is not installed (pip install submitit)") from None
    return submitit


def submit_slurm(study: Study, variants: list[Variant], opts: LaunchOptions) -> list[dict]:
    """Submit one SLURM job per unfinished variant through submitit; returns ``[{variant, job_id, command}]``."""
    submitit = _submitit()
    _check_slurm_tools()
    pending = [v for v in variants if not (finished(study, v) and (not study.test or scored(study, v)))]
    for v in variants:
        if v not in pending:
            log.info("%s: finished earlier, not submitted", v.name)
    jobs_file = study.folder / "slurm_jobs.json"
    jobs = json.loads(jobs_file.read_text()) if jobs_file.is_file() else []
    executor = submitit.SlurmExecutor(folder=str(study.folder / "slurm" / "%j"))
    params = {"time": opts.time_min, "gpus_per_node": opts.gpus, "ntasks_per_node": 1, "nodes": 1,
              "cpus_per_task": opts.cpus}
    if opts.partition:
        params["partition"] = opts.partition
    if opts.account:
        params["account"] = opts.account
    submitted = []
    for v in pending:
        earlier = [j for j in jobs if j["variant"] == v.name]
        if earlier:
            log.warning("%s: job %s was submitted before (%s); submitting again - if it still runs, the session "
                        "lock stops the second one", v.name, earlier[-1]["job_id"], earlier[-1]["submitted"])
        cmd = slurm_command(study, v, opts)
        executor.update_parameters(job_name=f"{study.name}-{v.name}", **params)
        job = executor.submit(submitit.helpers.CommandFunction(cmd, cwd=os.getcwd()))
        entry = {"variant": v.name, "job_id": str(job.job_id), "command": cmd,
                 "submitted": time.strftime("%Y-%m-%d %H:%M:%S")}
        submitted.append(entry)
        jobs.append(entry)
        atomic_write(jobs_file, json.dumps(jobs, indent=1) + "\n")
        log.info("%s: submitted SLURM job %s: %s", v.name, job.job_id, shlex.join(cmd))
    return submitted


def check_launcher(opts: LaunchOptions) -> None:
    """Refuse an unusable launcher before anything starts."""
    if opts.launcher not in LAUNCHERS:
        raise UsageError(f"--launcher {opts.launcher!r}: use one of {', '.join(LAUNCHERS)}")
    if opts.launcher == "slurm":
        _submitit()
        _check_slurm_tools()


def _check_slurm_tools() -> None:
    missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
    if missing:
        raise UsageError(f"--launcher slurm: {' and '.join(missing)} not found on PATH (run this on a SLURM "
                         "login node)")


