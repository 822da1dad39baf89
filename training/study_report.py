"""A study's table and curves, rebuilt from its run folders alone (``scripts/ablate.py --report``).

For each variant: what it changes, parameters and MACs at 256x256, the best
validation PSNR/SSIM and its epoch (from the run's ``history.json``, written
by ``train.py`` each epoch), the test PSNR/SSIM per set (``test.py``'s score
JSON), the change against the reference variant, training time and
images/s.  Written to the study folder as ``study.md``, ``study.csv``,
``study.json`` and ``curves.png`` (validation PSNR and training loss per
epoch, one line per variant).
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from utils.files import atomic_write

from .config import config_to_dict
from .study import Study, Variant, finished

MAC_SIZE = (256, 256)
COMPLEXITY_FILE = "complexity.json"  # parameters and MACs per model and options, counted once


def complexity(study: Study, v: Variant) -> tuple[int, int]:
    """``(parameters, MACs at 256x256)`` of a variant's model, cached in the study folder.

    The MACs are counted on a real forward pass on the CPU (seconds at the paper's scale), once per model
    and options.
    """
    import torch

    from models import build_model
    from models.complexity import count_macs, count_parameters

    args = config_to_dict(v.cfg.MODEL.ARGS)
    key = json.dumps([v.cfg.MODEL.NAME, args, list(MAC_SIZE)], sort_keys=True)
    cache_path = study.folder / COMPLEXITY_FILE
    cache = _read_json(cache_path) or {}
    if key not in cache:
        model = build_model(v.cfg.MODEL.NAME, **args)
        with torch.no_grad():
            cache[key] = [count_parameters(model), count_macs(model, MAC_SIZE)]
        atomic_write(cache_path, json.dumps(cache, indent=1) + "\n")
    params, macs = cache[key]
    return int(params), int(macs)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def variant_row(study: Study, v: Variant) -> dict:
    """Everything the table says of one variant (``None`` where its run has not produced it yet)."""
    history = _read_json(study.run_dir(v) / "history.json") or {}
    epochs = history.get("epochs", []) if isinstance(history, dict) else []
    validated = [e for e in epochs if e.get("val_psnr") is not None]
    best = max(validated, key=lambda e: e["val_psnr"], default=None)  # the first of equal scores, as train.py
    params, macs = complexity(study, v)
    time_s = sum(e.get("time_s") or 0 for e in epochs)
    # Images of the timed steps: after a mid-epoch resume an epoch's record counts only its last sitting,
    # so this is a throughput figure (like train_time_s), not the number of patches the run saw.
    images = sum(e.get("images") or 0 for e in epochs)
    scores = _read_json(study.scores_path(v)) if study.test else None
    test = {}
    for set_name, s in (scores or {}).items():
        if isinstance(s, dict) and "psnr" in s and set_name != "average":
            test[set_name] = {"psnr": s["psnr"], "ssim": s.get("ssim"), "n": s.get("n")}
    status = "finished" if finished(study, v) else ("partial" if epochs else "not started")
    return {
        "name": v.name, "about": v.about, "changes": v.changes, "status": status,
        "params": params, "macs": macs,
        "epochs": len(epochs), "planned_epochs": v.cfg.OPTIM.NUM_EPOCHS,
        "best_val_psnr": best["val_psnr"] if best else None,
        "best_val_ssim": best.get("val_ssim") if best else None,
        "best_epoch": best["epoch"] if best else None,
        "val_curve": {str(e["epoch"]): e["val_psnr"] for e in validated},
        "val_ssim_curve": {str(e["epoch"]): e.get("val_ssim") for e in validated},
        "loss_curve": {str(e["epoch"]): e.get("loss") for e in epochs},
        "input_val": history.get("input") if isinstance(history, dict) else None,
        "test": test,
        "train_time_s": round(time_s, 1),
        "timed_images": images,
        "images_per_s": round(images / time_s, 3) if time_s > 0 else None,
    }


def build_table(study: Study) -> dict:
    """The study's results as a JSON-able dict (``study.json``), deltas against the reference included."""
    rows = [variant_row(study, v) for v in study.variants]
    ref = next(r for r in rows if r["name"] == study.reference)
    for r in rows:
        r["delta_val_psnr"] = _delta(r["best_val_psnr"], ref["best_val_psnr"])
        r["delta_test_psnr"] = {k: _delta(s["psnr"], ref["test"].get(k, {}).get("psnr")) for k, s in r["test"].items()}
    inputs = [r["input_val"] for r in rows if r["input_val"]]
    return {
        "study": study.name, "about": study.about, "source": str(study.source), "base": str(study.base),
        "reference": study.reference, "shared_overrides": study.shared,
        "val_metric": study.variants[0].cfg.TRAINING.VAL_METRIC,
        "input_val": inputs[0] if inputs else None,
        "test_sets": sorted({k for r in rows for k in r["test"]}),
        "variants": rows,
    }


def _delta(value, reference):
    return None if value is None or reference is None else round(value - reference, 4)


def _fmt(value, digits: int, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _changes(r: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in r["changes"].items()) or "—"


def table_rows(table: dict) -> tuple[list[str], list[list[str]]]:
    sets = table["test_sets"]
    header = ["variant", "what it changes", "params", "GMACs@256²", "best val PSNR", "best val SSIM", "epoch",
              "Δ val PSNR"]
    for s in sets:
        header += [f"{s} PSNR", f"{s} SSIM", f"Δ {s} PSNR"]
    header += ["epochs", "train time", "img/s"]
    rows = []
    for r in table["variants"]:
        row = [r["name"] + (" (reference)" if r["name"] == table["reference"] else ""),
               (r["about"] + "; " if r["about"] else "") + _changes(r), f"{r['params']:,}", f"{r['macs'] / 1e9:.2f}",
               _fmt(r["best_val_psnr"], 2), _fmt(r["best_val_ssim"], 4), str(r["best_epoch"] or "—"),
               _fmt(r["delta_val_psnr"], 2, signed=True)]
        for s in sets:
            t = r["test"].get(s, {})
            row += [_fmt(t.get("psnr"), 2), _fmt(t.get("ssim"), 4), _fmt(r["delta_test_psnr"].get(s), 2, signed=True)]
        row += [f"{r['epochs']}/{r['planned_epochs']}", _duration(r["train_time_s"]), _fmt(r["images_per_s"], 2)]
        rows.append(row)
    if table["input_val"]:
        blank = [""] * (3 * len(sets))
        rows.append(["rainy input", "the input itself, unchanged", "0", "0.00",
                     _fmt(table["input_val"]["val_psnr"], 2), _fmt(table["input_val"]["val_ssim"], 4), "", "",
                     *blank, "", "", ""])
    return header, rows


def _duration(seconds: float) -> str:
    if not seconds:
        return "—"
    minutes = int(round(seconds / 60))
    return f"{minutes // 60}h{minutes % 60:02d}" if minutes >= 60 else f"{seconds / 60:.1f} min"


def markdown(table: dict) -> str:
    header, rows = table_rows(table)
    lines = [f"# Study {table['study']}", ""]
    if table["about"]:
        lines += [table["about"], ""]
    lines += [f"Base config `{table['base']}`, study file `{table['source']}`; validation "
              f"{table['val_metric']} (best epoch) and SSIM (Y channel) on the run's validation data; Δ against "
              f"`{table['reference']}`.", ""]
    if table["shared_overrides"]:
        lines += ["Shared by every variant: " + ", ".join(f"`{k}={v}`" for k, v in table["shared_overrides"].items()),
                  ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    unfinished = [r["name"] for r in table["variants"] if r["status"] != "finished"]
    if unfinished:
        lines += ["", f"Not finished yet: {', '.join(unfinished)}."]
    return "\n".join(lines) + "\n"


def csv_text(table: dict) -> str:
    header, rows = table_rows(table)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def plot_curves(table: dict, path: Path) -> None:
    """``curves.png``: validation PSNR and training loss per epoch, one line per variant (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_val, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=110)
    for r in table["variants"]:
        style = {"linewidth": 2.2} if r["name"] == table["reference"] else {"linewidth": 1.4}
        if r["val_curve"]:
            ax_val.plot([int(e) for e in r["val_curve"]], list(r["val_curve"].values()), marker=".", label=r["name"],
                        **style)
        losses = {int(e): v for e, v in r["loss_curve"].items() if v is not None}
        if losses:
            ax_loss.plot(list(losses), list(losses.values()), label=r["name"], **style)
    if table["input_val"]:
        ax_val.axhline(table["input_val"]["val_psnr"], color="grey", linestyle="--", linewidth=1,
                       label="rainy input")
    ax_val.set(xlabel="epoch", ylabel=f"validation PSNR (dB, {table['val_metric']})", title="validation")
    ax_loss.set(xlabel="epoch", ylabel="training loss (epoch mean)", title="training loss", yscale="log")
    for ax in (ax_val, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"study {table['study']}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def write_report(study: Study) -> dict[str, Path]:
    """Write ``study.md``, ``.csv``, ``.json`` and ``curves.png`` into the study folder; returns their paths."""
    table = build_table(study)
    out = {ext: study.folder / f"study.{ext}" for ext in ("md", "csv", "json")}
    atomic_write(out["md"], markdown(table))
    atomic_write(out["csv"], csv_text(table))
    atomic_write(out["json"], json.dumps(table, indent=1, allow_nan=False) + "\n")
    out["png"] = study.folder / "curves.png"
    plot_curves(table, out["png"])
    return out
