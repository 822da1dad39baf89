"""Watching a run: a progress bar on a terminal, a periodic log line elsewhere.

On a terminal each epoch shows a ``tqdm`` bar over its steps with the loss,
learning rate and images/s (tqdm adds the elapsed time and the epoch's ETA).
When the output is a file or a pipe (a cluster job, ``nohup``) a line is
logged every ``every`` steps instead::

    epoch 3/300 step 150/1124 (13%) | loss 0.0412 | lr 1.99e-04 | 11.8 img/s | epoch ETA 0:13:43 | run ETA 3 days, 1:02:11
"""
from __future__ import annotations

import datetime
import logging
import sys
import time

from tqdm import tqdm

log = logging.getLogger("train")


def _hms(seconds: float) -> str:
    return str(datetime.timedelta(seconds=max(int(seconds), 0)))


class EpochProgress:
    """Progress of one epoch of ``total`` steps (starting at ``done``, when resuming mid-epoch).

    Args:
        enabled: False on ranks other than 0 (they show nothing).
        batch_size: images per step on all ranks together (for images/s).
        epochs_left: epochs after this one (for the run's ETA).
        every: steps between log lines when not on a terminal (0 = none).
        terminal: force the bar (True) or the log lines (False); default: whether stderr is a terminal.
    """

    def __init__(self, epoch: int, num_epochs: int, total: int, done: int, batch_size: int,
                 epochs_left: int, enabled: bool = True, every: int = 50, terminal: bool | None = None):
        self.epoch, self.num_epochs, self.total, self.done = epoch, num_epochs, total, done
        self.batch_size, self.epochs_left, self.every = batch_size, epochs_left, every
        self.enabled = enabled
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.start = time.perf_counter()
        self.start_step = done
        self.bar = None
        if enabled and self.terminal:
            self.bar = tqdm(total=total, initial=done, desc=f"epoch {epoch}/{num_epochs}", unit="step",
                            leave=False, dynamic_ncols=True)

    def rate(self) -> float:
        """Images per second since this epoch (or this process) started."""
        elapsed = time.perf_counter() - self.start
        steps = self.done - self.start_step
        return steps * self.batch_size / elapsed if elapsed > 0 and steps else 0.0

    def eta(self) -> tuple[float, float]:
        """Seconds left in this epoch and in the whole run, at the current rate."""
        rate = self.rate()
        if rate <= 0:
            return float("nan"), float("nan")
        step_s = self.batch_size / rate
        epoch_left = (self.total - self.done) * step_s
        return epoch_left, epoch_left + self.epochs_left * self.total * step_s

    def update(self, loss: float | None, lr: float) -> None:
        self.done += 1
        if not self.enabled:
            return
        loss_text = f"{loss:.4f}" if loss is not None else "nan"
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {loss_text}, lr {lr:.2e}, {self.rate():.1f} img/s", refresh=False)
            self.bar.update()
        elif self.every > 0 and (self.done % self.every == 0 or self.done == self.total):
            epoch_eta, run_eta = self.eta()
            log.info("epoch %d/%d step %d/%d (%d%%) | loss %s | lr %.2e | %.1f img/s | epoch ETA %s | run ETA %s",
                     self.epoch, self.num_epochs, self.done, self.total, 100 * self.done // max(self.total, 1),
                     loss_text, lr, self.rate(), _hms(epoch_eta) if epoch_eta == epoch_eta else "?",
                     _hms(run_eta) if run_eta == run_eta else "?")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
