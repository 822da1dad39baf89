"""The real-rain CPU study in docs/ABLATIONS.md reproduces from its command (``-m slow``: it trains on real data).

``docs/ablations/dmsr_cpu_rain100l/study.json`` records the study's curves.  Running the study's command again
(its reference variant, stopped after the first epoch) must give the rainy input's validation scores exactly
(no training involved) and the first epoch's mean loss to the digits the JSON records on the machine that ran
the study; another CPU sums in another order, so here the loss must agree to 1e-3 (relative).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, require_shared

STUDY = REPO / "configs" / "ablations" / "dmsr_cpu_rain100l.yml"
RECORD = REPO / "docs" / "ablations" / "dmsr_cpu_rain100l" / "study.json"


@pytest.mark.slow
def test_the_first_epoch_of_the_cpu_study_reproduces(tmp_path):
    data = require_shared("data", "RainTrainL")
    (tmp_path / "Datasets").mkdir()
    (tmp_path / "Datasets" / "RainTrainL").symlink_to(data, target_is_directory=True)
    (tmp_path / "training.yml").symlink_to(REPO / "training.yml")  # the study's base, as in a checkout
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "ablate.py"), str(STUDY), "--only", "full",
                             "--out", str(out)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    history = out / "dmsr_cpu_rain100l" / "Deraining" / "full" / "history.json"
    deadline = time.monotonic() + 900
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if history.is_file() and json.loads(history.read_text() or "{}").get("epochs"):
                break
            time.sleep(1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        text, _ = proc.communicate(timeout=300)
    assert history.is_file(), text[-3000:]
    ours = json.loads(history.read_text())
    recorded = json.loads(RECORD.read_text())
    full = next(v for v in recorded["variants"] if v["name"] == "full")
    assert ours["input"] == pytest.approx(recorded["input_val"], abs=1e-9)
    first = ours["epochs"][0]
    assert first["epoch"] == 1
    assert first["loss"] == pytest.approx(full["loss_curve"]["1"], rel=1e-3)
    print(f"epoch 1 loss {first['loss']!r} (recorded {full['loss_curve']['1']!r}); "
          f"rainy input {ours['input']['val_psnr']:.4f} dB")
