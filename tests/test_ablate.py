"""scripts/ablate.py: study files, the demo study end to end, skip/resume, the table, the SLURM launcher."""
from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
from conftest import REPO
from hostile_helpers import run_tool, tool_env

sys.path.insert(0, str(REPO / "scripts"))
import ablate  # noqa: E402

from training.study import StudyError, load_study  # noqa: E402

DEMO_STUDY = REPO / "configs" / "ablations" / "demo.yml"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder laid out like the repository root for the demo study: configs/ and the demo data."""
    root = tmp_path_factory.mktemp("ablate")
    (root / "configs").symlink_to(REPO / "configs", target_is_directory=True)
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_demo_data.py"), "--out",
                    str(root / "Datasets" / "demo")], check=True, capture_output=True, env=tool_env())
    return root


def _ablate(workdir: Path, *args) -> subprocess.CompletedProcess:
    """``python scripts/ablate.py ARGS`` in ``workdir``, with the runner in this process (the hostile suite's
    harness: its output captured, its exit status, its state put back) and its train.py and test.py as the
    processes they always are: the runner's own interpreter start and imports are a tenth of a study."""
    with mock.patch.dict(os.environ, tool_env(), clear=True):  # the environment the children get
        run = run_tool("ablate", *args, cwd=workdir, timeout=600)
    return subprocess.CompletedProcess(["ablate.py", *map(str, args)], run.rc, run.stdout, run.stderr)


def _timeless(table: dict) -> dict:
    """The table without what depends on the machine's speed or on where a run was interrupted (times,
    images/s and the images they were timed over)."""
    drop = ("train_time_s", "images_per_s", "timed_images")
    return {**table, "variants": [{k: v for k, v in r.items() if k not in drop} for r in table["variants"]]}


@pytest.fixture(scope="module")
def demo_study(workdir):
    """The demo study run once from start to end (both variants trained and scored)."""
    run = _ablate(workdir, DEMO_STUDY, "--out", workdir / "studies")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    return workdir / "studies" / "demo", run


def test_the_demo_study_writes_its_table(demo_study):
    folder, run = demo_study
    table = json.loads((folder / "study.json").read_text())
    names = [v["name"] for v in table["variants"]]
    assert names == ["full", "no_fdsm"] and table["reference"] == "full"
    for v in table["variants"]:
        assert v["status"] == "finished" and v["epochs"] == 3
        assert v["params"] > 0 and v["macs"] > 0
        assert set(v["val_curve"]) == {"1", "2", "3"} and v["best_val_psnr"] == max(v["val_curve"].values())
        assert v["timed_images"] == 3 * 6 * 4 and v["images_per_s"] > 0
        assert set(v["test"]) == {"test"} and v["test"]["test"]["n"] == 6
    full, no_fdsm = table["variants"]
    assert no_fdsm["params"] < full["params"]  # FDSM's parameters are gone
    assert full["delta_val_psnr"] == 0 and no_fdsm["delta_val_psnr"] == pytest.approx(
        no_fdsm["best_val_psnr"] - full["best_val_psnr"], abs=1e-4)
    assert table["input_val"]["val_psnr"] > 0
    for ext in ("md", "csv"):
        assert "no_fdsm" in (folder / f"study.{ext}").read_text()
    assert (folder / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| full (reference) |" in run.stdout


def test_the_table_equals_the_runs_logs_and_evaluate(demo_study, workdir):
    import evaluate

    folder, _ = demo_study
    table = json.loads((folder / "study.json").read_text())
    for v in table["variants"]:
        log = (folder / "Deraining" / v["name"] / "train.log").read_text()
        logged = {m[0]: float(m[1]) for m in re.findall(r"epoch (\d+): loss [\d.]+, val PSNR ([\d.]+) dB", log)}
        assert logged == {e: round(p, 2) for e, p in v["val_curve"].items()}
        ssim = {m[0]: float(m[1]) for m in re.findall(r"epoch (\d+): .*SSIM ([\d.]+)", log)}
        assert ssim[str(v["best_epoch"])] == round(v["best_val_ssim"], 4)
        out = workdir / f"eval_{v['name']}.json"
        evaluate.main(["--result_dir", str(folder / "results" / v["name"] / "DMSR"), "--gt_dir",
                       str(workdir / "Datasets" / "demo"), "--datasets", "test", "--json", str(out)])
        scores = json.loads(out.read_text())["test"]
        assert (scores["psnr"], scores["ssim"]) == (v["test"]["test"]["psnr"], v["test"]["test"]["ssim"])


def test_running_it_again_trains_nothing_and_report_rebuilds(demo_study, workdir):
    folder, _ = demo_study
    checkpoints = {p: p.stat().st_mtime_ns for p in folder.rglob("*.pth")}
    before = json.loads((folder / "study.json").read_text())
    again = _ablate(workdir, DEMO_STUDY, "--out", workdir / "studies")
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stderr.count("finished earlier, not trained again") == 2 and "train.py --config" not in again.stderr
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.pth")} == checkpoints
    (folder / "study.json").unlink()
    report = _ablate(workdir, DEMO_STUDY, "--out", workdir / "studies", "--report")
    assert report.returncode == 0, report.stderr[-2000:]
    assert json.loads((folder / "study.json").read_text()) == before


def test_a_killed_study_resumes_to_the_same_table(demo_study, workdir):
    """Stopped mid-variant by a signal to its process group, then run again: the variant resumes from what it
    saved and ends with the uninterrupted study's row.  (Its reference variant only (``--only full``): the
    other one would add nothing but time; running a study again after its variants is the test above.)"""
    folder, _ = demo_study
    out = workdir / "killed"
    proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "ablate.py"), str(DEMO_STUDY), "--out", str(out),
                             "--only", "full"], cwd=workdir, env=tool_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    first = out / "demo" / "Deraining" / "full" / "model_latest.pth"
    deadline = time.monotonic() + 300
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)  # the whole group, as SLURM and timeout do
    text, _ = proc.communicate(timeout=300)
    assert proc.returncode == 143, text[-3000:]
    assert "Traceback" not in text and "run the same command again to resume" in text
    assert not (out / "demo" / "study.json").exists()
    resumed = _ablate(workdir, DEMO_STUDY, "--out", out, "--only", "full")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "full: resuming" in resumed.stderr
    got = _timeless(json.loads((out / "demo" / "study.json").read_text()))
    want = _timeless(json.loads((folder / "study.json").read_text()))
    assert [v["status"] for v in got["variants"]] == ["finished", "not started"]
    assert got["variants"][0] == want["variants"][0] and got["input_val"] == want["input_val"]


def test_the_slurm_launcher_submits_one_job_per_variant(workdir, tmp_path, monkeypatch):
    pytest.importorskip("submitit", reason="submitit (requirements-dev.txt) drives the SLURM launcher")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "sbatch_calls"
    sbatch = bin_dir / "sbatch"  # records the call and the job script, answers like SLURM does
    sbatch.write_text(f'#!/bin/sh\nn=$(ls {record}/args* 2>/dev/null | wc -l)\nmkdir -p {record}\n'
                      f'for a in "$@"; do case "$a" in *.sh) cp "$a" {record}/job$n.sh;; esac; done\n'
                      f'echo "$@" > {record}/args$n\necho "Submitted batch job $((4200 + n))"\n')
    sbatch.chmod(0o755)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(workdir)
    out = tmp_path / "studies"
    assert ablate.main([str(DEMO_STUDY), "--out", str(out), "--launcher", "slurm", "--partition", "gpu",
                        "--gpus", "4", "--time", "90", "--account", "lab42"]) == 0
    jobs = json.loads((out / "demo" / "slurm_jobs.json").read_text())
    assert [(j["variant"], j["job_id"]) for j in jobs] == [("full", "4200"), ("no_fdsm", "4201")]
    script = (record / "job0.sh").read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=4", "#SBATCH --time=90",
                 "#SBATCH --account=lab42", "#SBATCH --job-name=demo-full"):
        assert line in script
    # the job runs this runner for its one variant, under torchrun for 4 GPUs
    pickled = next((out / "demo" / "slurm").rglob("4200_submitted.pkl"))
    with open(pickled, "rb") as f:
        command = pickle.load(f).function.command
    assert command[1:] == [str(REPO / "scripts" / "ablate.py"), str(DEMO_STUDY), "--only", "full", "--launcher",
                           "torchrun", "--out", str(out.resolve()), "--no-report", "--nproc", "4"]
    assert not (out / "demo" / "Deraining").exists()  # nothing trained here


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


GOOD = """name: s
base: {base}
overrides: {{OPTIM.NUM_EPOCHS: 5}}
variants:
  a: {{about: first}}
  b:
    overrides: {{MODEL.ARGS.use_fdsm: false}}
"""


@pytest.mark.parametrize("text, culprit", [
    ("name: s\nbase: [unclosed\n", "not a valid YAML"),
    ("name: s\nbase: {base}\nvariants:\n  a: {{}}\nextra: 1\n", "unknown key 'extra'"),
    ("name: s\nbase: missing.yml\nvariants:\n  a: {{}}\n", "base config missing.yml not found"),
    ("name: s\nbase: {base}\nvariants: {{}}\n", "'variants' must map"),
    ("name: s\nbase: {base}\nvariants:\n  a: {{}}\n  b:\n    overrides: {{OPTIM.LR_INITAL: 1}}\n",
     "variant b: unknown config key 'OPTIM.LR_INITAL'"),
    ("name: s\nbase: {base}\nvariants:\n  a: {{}}\n  bad:\n    overrides: {{OPTIM.BATCH_SIZE: -4}}\n",
     "variant bad: OPTIM.BATCH_SIZE must be"),
    ("name: s\nbase: {base}\nvariants:\n  a:\n    overrides: {{MODEL.SESSION: x}}\n", "MODEL.SESSION is set by"),
    ("name: s\nbase: {base}\nvariants:\n  ../up: {{}}\n", "plain folder name"),
    ("name: s\nbase: {base}\nreference: c\nvariants:\n  a: {{}}\n", "reference 'c' is not one of the variants"),
    ("name: s\nbase: {base}\nvariants:\n  a: {{}}\ntest: {{input_dir: nowhere}}\n", "test.input_dir nowhere"),
])
def test_bad_study_files_are_one_error_naming_the_culprit(tmp_path, monkeypatch, text, culprit):
    monkeypatch.chdir(tmp_path)
    base = _write(tmp_path / "base.yml", "TRAINING:\n  TRAIN_DIR: .\n  VAL_DIR: .\n")
    study = _write(tmp_path / "study.yml", text.format(base=base))
    with pytest.raises(StudyError, match=re.escape(culprit)):
        load_study(study)


def test_only_and_a_folder_holding_another_study(tmp_path, monkeypatch, capsys):
    from training.study import check_folder, record

    monkeypatch.chdir(tmp_path)
    base = _write(tmp_path / "base.yml", "TRAINING:\n  TRAIN_DIR: .\n  VAL_DIR: .\n")
    study = load_study(_write(tmp_path / "study.yml", GOOD.format(base=base)), tmp_path / "out")
    assert [v.name for v in study.select("b")] == ["b"]
    with pytest.raises(StudyError, match="no variant 'c'"):
        study.select("a,c")
    record(study)
    other = load_study(_write(tmp_path / "other.yml", GOOD.replace("name: s", "name: s").replace(
        "NUM_EPOCHS: 5", "NUM_EPOCHS: 6").format(base=base)), tmp_path / "out")
    check_folder(other)  # same study, nothing started: a changed config is taken
    (other.run_dir(other.variants[0])).mkdir(parents=True)
    (other.run_dir(other.variants[0]) / "history.json").write_text("{}")
    with pytest.raises(StudyError, match=r"variant a .* was started with another config \(OPTIM.NUM_EPOCHS: 5 -> 6"):
        check_folder(other)
    renamed = load_study(_write(tmp_path / "renamed.yml", GOOD.replace("name: s", "name: t").format(base=base)),
                         tmp_path / "out")
    (tmp_path / "out" / "s").rename(tmp_path / "out" / "t")
    with pytest.raises(StudyError, match="already holds the study 's'"):
        check_folder(renamed)


def test_the_dry_run_prints_each_resolved_config_and_starts_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base = _write(tmp_path / "base.yml", "TRAINING:\n  TRAIN_DIR: .\n  VAL_DIR: .\n")
    study = _write(tmp_path / "study.yml", GOOD.format(base=base))
    assert ablate.main([str(study), "--dry-run", "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "# ---- variant a: first" in text and "# changes: MODEL.ARGS.use_fdsm=False" in text
    assert text.count("NUM_EPOCHS: 5") == 2 and "use_fdsm: false" in text
    assert not (tmp_path / "out").exists()


def test_missing_launchers_are_refused_before_anything_starts(tmp_path, monkeypatch):
    from utils.errors import UsageError

    monkeypatch.chdir(tmp_path)
    base = _write(tmp_path / "base.yml", "TRAINING:\n  TRAIN_DIR: .\n  VAL_DIR: .\n")
    study = _write(tmp_path / "study.yml", GOOD.format(base=base))
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no srun
    with pytest.raises(UsageError, match="sbatch and srun not found"):
        ablate.main([str(study), "--launcher", "slurm", "--out", str(tmp_path / "out")])
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if not installed
    with pytest.raises(UsageError, match="needs submitit"):
        ablate.main([str(study), "--launcher", "slurm", "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, variants, switch", [
    ("dmsr_components", 6, ("no_fdsm", "MODEL.ARGS.use_fdsm", False)),
    ("mspfn_components", 6, ("m5", "MODEL.ARGS.num_ffm", 5)),
    ("dmsr_cpu_rain100l", 7, ("spga_multiply", "MODEL.ARGS.spga_multiply", True)),
    ("demo", 2, ("no_fdsm", "MODEL.ARGS.use_fdsm", False)),
])
def test_the_shipped_studies_are_valid(tmp_path, monkeypatch, name, variants, switch):
    """Every variant of every study in configs/ablations builds and validates (data folders stubbed)."""
    monkeypatch.chdir(tmp_path)
    for item in ("configs", "training.yml"):
        (tmp_path / item).symlink_to(REPO / item)
    for folder in ("Synthetic_Rain_Datasets/train", "Synthetic_Rain_Datasets/test", "RainTrainL", "demo/train",
                   "demo/test"):
        (tmp_path / "Datasets" / folder).mkdir(parents=True)
    study = load_study(REPO / "configs" / "ablations" / f"{name}.yml")
    assert len(study.variants) == variants and study.reference == study.variants[0].name
    variant, key, value = switch
    section, *rest = key.split(".")
    node = study.by_name[variant].cfg[section]
    for part in rest:
        node = node[part]
    assert node == value
    assert all(v.cfg.TRAINING.VAL_SPLIT > 0 and not v.cfg.TRAINING.VAL_DIR for v in study.variants)
    assert len({v.digest for v in study.variants}) == variants
