"""The training progress display: a bar on a terminal, periodic log lines elsewhere."""
from __future__ import annotations

import logging
import re
import time

from training.progress import EpochProgress


def test_log_lines_when_not_on_a_terminal(caplog):
    caplog.set_level(logging.INFO, logger="train")
    p = EpochProgress(epoch=2, num_epochs=5, total=6, done=0, batch_size=4, epochs_left=3, every=2, terminal=False)
    for k in range(6):
        time.sleep(0.01)
        p.update(0.5 - 0.01 * k, 2e-4)
    p.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3  # steps 2, 4, 6
    assert lines[0].startswith("epoch 2/5 step 2/6 (33%) | loss 0.4900 | lr 2.00e-04 |")
    rate = float(re.search(r"\| ([\d.]+) img/s", lines[-1]).group(1))
    assert 40 < rate < 400  # 4 images per ~10 ms step
    assert "epoch ETA 0:00:00" in lines[-1]
    run_eta = re.search(r"run ETA (\d+):(\d\d):(\d\d)", lines[-1])
    assert run_eta is not None  # 3 more epochs of 6 steps at the measured rate: well under a minute
    assert int(run_eta.group(2)) == 0 and int(run_eta.group(1)) == 0


def test_eta_counts_the_remaining_steps_and_epochs():
    p = EpochProgress(epoch=1, num_epochs=3, total=10, done=4, batch_size=2, epochs_left=2, every=0, terminal=False)
    p.start -= 2.0  # pretend 2 s have passed
    for _ in range(2):
        p.update(0.1, 1e-4)  # 2 steps (resumed at step 4) in 2 s: 1 s per step, 2 img/s
    assert abs(p.rate() - 2.0) < 0.05
    epoch_left, run_left = p.eta()
    assert abs(epoch_left - 4.0) < 0.1 and abs(run_left - 24.0) < 0.5  # 4 steps + 2 epochs x 10 steps


def test_bar_on_a_terminal(capsys):
    p = EpochProgress(epoch=1, num_epochs=1, total=3, done=0, batch_size=1, epochs_left=0, terminal=True)
    for _ in range(3):
        time.sleep(0.15)  # past tqdm's refresh interval
        p.update(0.25, 1e-3)
    p.close()
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "3/3" in err and "loss 0.2500" in err and "img/s" in err


def test_other_ranks_show_nothing(capsys, caplog):
    caplog.set_level(logging.INFO, logger="train")
    p = EpochProgress(epoch=1, num_epochs=1, total=2, done=0, batch_size=1, epochs_left=0, enabled=False,
                      every=1, terminal=False)
    p.update(0.1, 1e-3)
    p.update(0.1, 1e-3)
    p.close()
    assert not caplog.records and not capsys.readouterr().err
