"""Run an ablation study: train every variant of a study file, score them, and write the table.

    python scripts/ablate.py configs/ablations/demo.yml              # one variant after another, here
    python scripts/ablate.py STUDY.yml --only full,no_fdsm           # some variants
    python scripts/ablate.py STUDY.yml --dry-run                     # print the resolved configs, run nothing
    python scripts/ablate.py STUDY.yml --launcher torchrun --nproc 4 # each variant on 4 GPUs
    python scripts/ablate.py STUDY.yml --launcher slurm --partition gpu --gpus 4 --time 1440
    python scripts/ablate.py STUDY.yml --report                      # rebuild the table from the run folders

The study file format is described in ``training/study.py`` and docs/ABLATIONS.md.
Each variant is an ordinary train.py run in ``<study folder>/<MODEL.MODE>/<variant>/``;
the table goes to ``<study folder>/study.{md,csv,json}`` and ``curves.png``.  Running
the same command again skips finished variants and resumes interrupted ones.

Exit status: 0 when done, 1 with an "error:" line for bad input, 143 when a
stop signal ended it (the running variant saved its checkpoint; run the same
command again to resume).
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    from utils.errors import positive_int

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("study", help="the study file (YAML)")
    p.add_argument("--only", help="comma-separated variant names (default: all)")
    p.add_argument("--out", help="folder of study folders (default: the study file's 'out')")
    p.add_argument("--dry-run", action="store_true", help="print each variant's resolved config; run nothing")
    p.add_argument("--report", action="store_true", help="only rebuild the table and curves from the run folders")
    p.add_argument("--no-report", action="store_true", help=argparse.SUPPRESS)  # a SLURM job's own run
    p.add_argument("--launcher", default="local", choices=("local", "torchrun", "slurm"))
    p.add_argument("--nproc", type=positive_int, default=1, help="processes per variant with --launcher torchrun")
    p.add_argument("--device", help="passed to train.py and test.py (cpu, cuda, cuda:N)")
    p.add_argument("--fast", action="store_true", help="train.py --fast for every variant")
    slurm = p.add_argument_group("--launcher slurm (through submitit)")
    slurm.add_argument("--partition", help="SLURM partition")
    slurm.add_argument("--time", type=positive_int, default=24 * 60, help="time limit of each job in minutes")
    slurm.add_argument("--gpus", type=positive_int, default=1, help="GPUs per job (more than 1: torchrun in the job)")
    slurm.add_argument("--cpus", type=positive_int, default=8, help="CPUs per job")
    slurm.add_argument("--account", help="SLURM account to charge")
    return p


def main(argv: list[str] | None = None) -> int:
    from training.run_state import EXIT_STOPPED
    from training.study import check_folder, load_study, record
    from training.study_report import write_report
    from training.study_runner import LaunchOptions, StudyStopped, check_launcher, run_local, submit_slurm

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    study = load_study(args.study, args.out)
    variants = study.select(args.only)
    if args.dry_run:
        for v in variants:
            print(f"# ---- variant {v.name}: {v.about or '(no description)'}")
            print(f"# changes: {', '.join(f'{k}={val}' for k, val in v.changes.items()) or 'nothing (shared only)'}")
            print(f"# runs in {study.run_dir(v)}")
            print(v.cfg.dump())
        return 0
    check_folder(study)
    if args.report:
        paths = write_report(study)
        print(paths["md"].read_text(encoding="utf-8"))
        return 0
    opts = LaunchOptions(launcher=args.launcher, nproc=args.nproc, device=args.device, fast=args.fast,
                         partition=args.partition, time_min=args.time, gpus=args.gpus, cpus=args.cpus,
                         account=args.account)
    check_launcher(opts)
    record(study)
    if args.launcher == "slurm":
        jobs = submit_slurm(study, variants, opts)
        print(f"{len(jobs)} job(s) submitted; when they end: python scripts/ablate.py "
              f"{shlex.quote(args.study)} --report")
        return 0
    try:
        run_local(study, variants, opts)
    except StudyStopped as stop:
        logging.warning("%s", stop)
        return EXIT_STOPPED
    if not args.no_report:
        paths = write_report(study)
        print(paths["md"].read_text(encoding="utf-8"))
        logging.info("table: %s (also .csv, .json), curves: %s", paths["md"], paths["png"])
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # run as a file: make the project's packages importable
    from utils.errors import run_cli

    run_cli(main)
