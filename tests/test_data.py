"""The data pipeline: pairing and start-up checks, patches, augmentation, seeding, the store."""
from __future__ import annotations

import os
import pickle
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from data import (
    DATASETS,
    DatasetError,
    PairedTrainDataset,
    PairedValDataset,
    build_dataset,
    build_train_loader,
    set_epoch,
)
from data.folders import PairingError
from data.store import ImageStore, build_store
from data.testsets import find_test_sets
from data.transforms import augment, center_crop_origin, pad_to_size
from utils.image_io import write_image


def coord_image(h: int, w: int, tag: int = 0) -> np.ndarray:
    """uint8 image whose pixel (y, x) holds (y, x, tag): every pixel says where it came from."""
    yy, xx = np.mgrid[:h, :w]
    return np.stack([yy, xx, np.full_like(yy, tag)], axis=2).astype(np.uint8)


def make_dataset(root: Path, images: dict[str, np.ndarray], target_prefix: str = "") -> Path:
    """Write input/<name>.png and target/<prefix><name>.png, the target being 255 - input."""
    for name, img in images.items():
        write_image(root / "input" / f"{name}.png", img)
        write_image(root / "target" / f"{target_prefix}{name}.png", 255 - img)
    return root


def as_uint8(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8; exact for the k/255 values the datasets produce."""
    return np.round(t.numpy().transpose(1, 2, 0) * 255.0).astype(np.uint8)


@pytest.fixture
def coord_root(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "set", {f"{i:03d}": coord_image(100, 90, tag=i) for i in range(4)})


# --- registry and start-up checks ---------------------------------------------------------------

def test_unknown_dataset_name_lists_valid_names():
    with pytest.raises(KeyError) as err:
        build_dataset("paired_tran", root="x")
    for name in DATASETS:
        assert name in str(err.value)


def test_pairs_by_name_with_rain_norain_prefixes(tmp_path):
    imgs = {f"rain-{i}": coord_image(70, 80, tag=i) for i in (1, 2, 10)}
    for name, img in imgs.items():
        write_image(tmp_path / "input" / f"{name}.png", img)
        write_image(tmp_path / "target" / f"no{name}.png", 255 - img)
    ds = build_dataset("paired_train", root=tmp_path, patch_size=16)
    assert [p.name for p in ds.pairs] == ["rain-1", "rain-2", "rain-10"]
    assert [p.target.name for p in ds.pairs] == ["norain-1.png", "norain-2.png", "norain-10.png"]
    for inp, tgt, name in (ds[i] for i in range(3)):  # tag channel identifies the image
        assert int(as_uint8(inp)[0, 0, 2]) == int(name.split("-")[1])
        assert np.array_equal(as_uint8(tgt), 255 - as_uint8(inp))


def test_missing_and_extra_files_are_named(tmp_path):
    for name in ("001", "002", "003"):
        write_image(tmp_path / "input" / f"{name}.png", coord_image(20, 20))
    for name in ("001", "002", "004"):
        write_image(tmp_path / "target" / f"{name}.png", coord_image(20, 20))
    with pytest.raises(PairingError) as err:
        PairedTrainDataset(tmp_path)
    assert "003.png" in str(err.value) and "004.png" in str(err.value)


def test_missing_folder_is_named(tmp_path):
    write_image(tmp_path / "input" / "1.png", coord_image(20, 20))
    with pytest.raises(DatasetError, match="target"):
        PairedTrainDataset(tmp_path)


def test_every_unreadable_file_is_named_at_startup(coord_root):
    truncated = coord_root / "input" / "001.png"
    truncated.write_bytes(truncated.read_bytes()[:200])
    garbage = coord_root / "target" / "002.png"
    garbage.write_bytes(b"this is not a PNG")
    flipped = coord_root / "input" / "003.png"
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF  # checksum no longer matches: caught by verification, not by the header
    flipped.write_bytes(bytes(data))
    with pytest.raises(DatasetError) as err:
        PairedTrainDataset(coord_root)
    message = str(err.value)
    assert "3 problem(s)" in message
    for path in (truncated, garbage, flipped):
        assert str(path) in message
    assert str(coord_root / "input" / "000.png") not in message
    # Reading headers only catches what is not an image at all.
    with pytest.raises(DatasetError) as err:
        PairedTrainDataset(coord_root, verify=False)
    assert "1 problem(s)" in str(err.value) and str(garbage) in str(err.value)


def test_long_problem_lists_are_cut(tmp_path):
    for i in range(25):
        (tmp_path / "input").mkdir(parents=True, exist_ok=True)
        (tmp_path / "target").mkdir(parents=True, exist_ok=True)
        (tmp_path / "input" / f"{i}.png").write_bytes(b"junk")
        write_image(tmp_path / "target" / f"{i}.png", coord_image(8, 8))
    with pytest.raises(DatasetError) as err:
        PairedValDataset(tmp_path)
    assert "25 problem(s)" in str(err.value) and "... and 5 more" in str(err.value)


def test_size_mismatch_names_the_pair(coord_root):
    bad_target = coord_root / "target" / "002.png"
    write_image(bad_target, coord_image(100, 91))
    with pytest.raises(DatasetError) as err:
        PairedTrainDataset(coord_root)
    message = str(err.value)
    assert "size mismatch" in message
    assert str(coord_root / "input" / "002.png") in message and str(bad_target) in message
    assert "100x90" in message and "100x91" in message


# --- training patches ---------------------------------------------------------------------------

def test_train_patch_shape_dtype_range(coord_root):
    inp, tgt, name = PairedTrainDataset(coord_root, patch_size=48)[1]
    assert inp.shape == tgt.shape == (3, 48, 48)
    assert inp.dtype == tgt.dtype == torch.float32
    assert 0.0 <= float(inp.min()) and float(inp.max()) <= 1.0
    assert name == "001"


def identify_patch(patch: np.ndarray, image: np.ndarray, size: int) -> tuple[int, int, int]:
    """(y, x, mode) such that patch == augment(image[y:y+size, x:x+size], mode); fails if none."""
    y, x = int(patch[..., 0].min()), int(patch[..., 1].min())
    crop = image[y : y + size, x : x + size]
    modes = [m for m in range(8) if np.array_equal(augment(crop, m), patch)]
    assert len(modes) == 1, f"patch is not a flip/rotation of the crop at {(y, x)}"
    return y, x, modes[0]


@pytest.mark.parametrize("source", ["files", "store"])
def test_patches_are_aligned_exact_variants_of_a_crop(coord_root, tmp_path, source):
    size = 32
    if source == "store":
        build_store(coord_root, tmp_path / "s.store")
    kwargs = {"root": coord_root} if source == "files" else {"store": tmp_path / "s.store"}
    ds = PairedTrainDataset(patch_size=size, repeat=50, **kwargs)
    images = {f"{i:03d}": coord_image(100, 90, tag=i) for i in range(4)}
    modes, origins = [], []
    for index in range(len(ds)):
        inp, tgt, name = ds[index]
        inp, tgt = as_uint8(inp), as_uint8(tgt)
        assert np.array_equal(tgt, 255 - inp)  # target cut from the same place, same variant
        y, x, mode = identify_patch(inp, images[name], size)
        assert 0 <= y <= 100 - size and 0 <= x <= 90 - size
        modes.append(mode)
        origins.append((y, x))
    counts = np.bincount(modes, minlength=8)
    assert counts.min() >= 12 and counts.max() <= 40, counts  # uniform: 25 of the 200 expected each
    ys, xs = np.array(origins).T
    assert ys.min() <= 3 and ys.max() >= 100 - size - 3 and xs.min() <= 3 and xs.max() >= 90 - size - 3


def test_augment_gives_the_eight_dihedral_variants():
    a = np.arange(5 * 5 * 3).reshape(5, 5, 3)
    variants = [augment(a, m) for m in range(8)]
    assert np.array_equal(variants[0], a)
    assert np.array_equal(variants[1], np.rot90(a))
    assert np.array_equal(variants[2], a[::-1, ::-1])
    assert np.array_equal(variants[4], a[:, ::-1])
    assert np.array_equal(variants[6], a[::-1, :])
    assert np.array_equal(variants[3], np.rot90(a, -1))
    assert np.array_equal(variants[5], a.transpose(1, 0, 2)[::-1, ::-1])  # anti-transpose
    assert np.array_equal(variants[7], a.transpose(1, 0, 2))  # transpose
    assert len({v.tobytes() for v in variants}) == 8
    with pytest.raises(ValueError):
        augment(a, 8)


def test_small_images_are_reflect_padded(tmp_path):
    img = coord_image(20, 30, tag=7)
    root = make_dataset(tmp_path, {"small": img})
    inp, tgt, _ = PairedTrainDataset(root, patch_size=40, augment=False)[0]
    inp = as_uint8(inp)
    assert inp.shape == (40, 40, 3)
    assert np.array_equal(inp, np.pad(img, ((0, 20), (0, 10), (0, 0)), mode="reflect"))
    assert np.array_equal(as_uint8(tgt), 255 - inp)
    assert np.array_equal(inp[20, :30], img[18]) and np.array_equal(inp[:20, 30], img[:, 28])  # not an edge copy
    assert pad_to_size(img, 10, 10) is img
    tiny = pad_to_size(np.full((1, 1, 3), 9, np.uint8), 4, 5)
    assert tiny.shape == (4, 5, 3) and (tiny == 9).all()


def test_gray_rgba_and_16bit_files_become_rgb(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (24, 28), dtype=np.uint8)
    rgba = rng.integers(0, 256, (24, 28, 4), dtype=np.uint8)  # BGRA as OpenCV writes it
    deep = rng.integers(0, 65536, (24, 28, 3), dtype=np.uint16)
    for folder in ("input", "target"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "a_gray.png"), gray)
        cv2.imwrite(str(tmp_path / folder / "b_rgba.png"), rgba)
        cv2.imwrite(str(tmp_path / folder / "c_deep.png"), deep)
    ds = PairedValDataset(tmp_path)
    expected = [
        np.repeat(gray[:, :, None], 3, axis=2),
        rgba[:, :, 2::-1],
        np.round(deep[:, :, ::-1] / 257.0).astype(np.uint8),
    ]
    for (inp, tgt, _), want in zip((ds[i] for i in range(3)), expected):
        assert inp.shape == (3, 24, 28)
        assert np.array_equal(as_uint8(inp), want) and np.array_equal(as_uint8(tgt), want)


# --- reproducibility ----------------------------------------------------------------------------

def test_samples_depend_only_on_seed_epoch_and_index(coord_root):
    a, b = PairedTrainDataset(coord_root, patch_size=16, seed=3), PairedTrainDataset(coord_root, patch_size=16, seed=3)
    sample = [a[i][0] for i in range(4)]
    assert all(torch.equal(sample[i], b[i][0]) for i in range(4))
    assert all(torch.equal(sample[i], a[i][0]) for i in range(4))  # no hidden state consumed
    a.set_epoch(1)
    assert a.epoch == 1
    assert not all(torch.equal(sample[i], a[i][0]) for i in range(4))
    a.set_epoch(0)
    assert all(torch.equal(sample[i], a[i][0]) for i in range(4))
    other = PairedTrainDataset(coord_root, patch_size=16, seed=4)
    assert not all(torch.equal(sample[i], other[i][0]) for i in range(4))


def epoch_batches(loader, epoch: int) -> list[tuple[torch.Tensor, list[str]]]:
    set_epoch(loader, epoch)
    return [(torch.cat([inp, tgt]), list(names)) for inp, tgt, names in loader]


def same_batches(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) and nx == ny for (x, nx), (y, ny) in zip(a, b))


def test_batches_independent_of_workers_and_resumable(coord_root):
    ds = PairedTrainDataset(coord_root, patch_size=16, seed=5, repeat=3)
    straight = build_train_loader(ds, batch_size=4, seed=5, num_workers=0)
    runs = [epoch_batches(straight, e) for e in range(3)]
    assert not same_batches(runs[0], runs[1])
    # Two persistent workers: the epoch lives in shared memory, so they see set_epoch.
    workers = build_train_loader(PairedTrainDataset(coord_root, patch_size=16, seed=5, repeat=3), batch_size=4,
                                 seed=5, num_workers=2, persistent_workers=True)
    assert all(same_batches(runs[e], epoch_batches(workers, e)) for e in range(3))
    # "Resuming" at epoch 2 with fresh objects gives epoch 2 of the straight run.
    resumed = build_train_loader(PairedTrainDataset(coord_root, patch_size=16, seed=5, repeat=3), batch_size=4, seed=5)
    assert same_batches(runs[2], epoch_batches(resumed, 2))


class _StopHandlers(torch.utils.data.Dataset):
    """Each sample: whether the process serving it ignores SIGTERM and SIGINT, and its pid."""

    def __len__(self):
        return 2

    def __getitem__(self, index):
        ignored = [signal.getsignal(s) is signal.SIG_IGN for s in (signal.SIGTERM, signal.SIGINT)]
        return torch.tensor([*ignored, os.getpid()])


def test_workers_leave_stop_signals_to_the_main_process():
    """A cluster signals every process of a job: workers must survive it so the main process can save."""
    before = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)]
    batch = next(iter(build_train_loader(_StopHandlers(), batch_size=2, num_workers=1)))
    assert batch[:, :2].all() and (batch[:, 2] != os.getpid()).all()  # served by a worker that ignores both
    assert [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)] == before  # main process untouched


# --- validation and test datasets ---------------------------------------------------------------

def test_val_centre_crop_and_whole_image(coord_root):
    inp, tgt, name = PairedValDataset(coord_root, patch_size=32)[2]
    y, x = center_crop_origin(100, 90, 32)
    assert (y, x) == (34, 29)
    assert np.array_equal(as_uint8(inp), coord_image(100, 90, tag=2)[y : y + 32, x : x + 32])
    assert np.array_equal(as_uint8(tgt), 255 - as_uint8(inp))
    for whole in (None, 0):
        inp, _, _ = build_dataset("paired_val", root=coord_root, patch_size=whole)[0]
        assert inp.shape == (3, 100, 90)
    inp, _, _ = PairedValDataset(coord_root, patch_size=128)[0]  # larger than the image: padded
    assert inp.shape == (3, 128, 128)
    with pytest.raises(ValueError):
        PairedValDataset(coord_root, patch_size=-4)


def test_test_set_discovery_with_and_without_targets(coord_root, tmp_path):
    (found,) = find_test_sets(coord_root.parent, [coord_root.name], score=True)
    assert found.name == coord_root.name and len(found.inputs) == 4 and found.targets is not None
    assert [a.stem for a in found.inputs] == [t.stem for t in found.targets]
    (unscored,) = find_test_sets(coord_root.parent, [coord_root.name], score=False)
    assert unscored.targets is None and len(unscored.inputs) == 4
    plain = tmp_path / "real"  # a plain folder of images: a set of its own, without targets
    write_image(plain / "photo.png", coord_image(30, 40))
    (real,) = find_test_sets(plain, None, score=True)
    assert real.name == "real" and real.targets is None and [p.name for p in real.inputs] == ["photo.png"]
    with pytest.raises(FileNotFoundError, match="no test set"):
        find_test_sets(tmp_path, ["Nope"], True)


# --- pre-decoded store --------------------------------------------------------------------------

def test_store_gives_the_same_samples_as_the_files(coord_root, tmp_path):
    write_image(coord_root / "input" / "big.png", coord_image(120, 130, tag=9))  # sizes differ between pairs
    write_image(coord_root / "target" / "big.png", 255 - coord_image(120, 130, tag=9))
    store = tmp_path / "train.store"
    from scripts.build_store import main as build_store_main

    assert build_store_main(["--root", str(coord_root), "--out", str(store)]) == 0
    assert store.stat().st_size == 4096 + 2 * 3 * (4 * 100 * 90 + 120 * 130)
    for kwargs in ({"store": store}, {"store": store, "root": coord_root}):
        files, stored = PairedTrainDataset(coord_root, seed=2), PairedTrainDataset(seed=2, **kwargs)
        for epoch in (0, 7):
            files.set_epoch(epoch)
            stored.set_epoch(epoch)
            for i in range(len(files)):
                a, b = files[i], stored[i]
                assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]
    val_files, val_store = PairedValDataset(coord_root, patch_size=40), PairedValDataset(store=store, patch_size=40)
    assert all(torch.equal(val_files[i][0], val_store[i][0]) for i in range(5))
    loaded = ImageStore(store)
    loaded.pair(0)
    assert loaded._mm is not None
    assert pickle.loads(pickle.dumps(loaded))._mm is None  # workers map the file themselves
    assert len(pickle.dumps(loaded)) < 10_000


def test_stale_or_bad_store_is_reported(coord_root, tmp_path):
    store = tmp_path / "s.store"
    assert build_store(coord_root, store) == 4
    changed = coord_root / "target" / "001.png"
    write_image(changed, np.random.default_rng(0).integers(0, 256, (100, 90, 3), dtype=np.uint8))  # same pixel size
    write_image(coord_root / "input" / "new.png", coord_image(100, 90))
    write_image(coord_root / "target" / "new.png", coord_image(100, 90))
    with pytest.raises(DatasetError) as err:
        PairedTrainDataset(coord_root, store=store)
    assert "out of date" in str(err.value) and "new.png" in str(err.value) and str(changed) in str(err.value)
    not_a_store = tmp_path / "x.store"
    not_a_store.write_bytes(b"hello" * 100)
    with pytest.raises(DatasetError, match="not an image store"):
        ImageStore(not_a_store)
    truncated = tmp_path / "t.store"
    truncated.write_bytes(store.read_bytes()[:-10])
    with pytest.raises(DatasetError, match="truncated"):
        ImageStore(truncated)
    with pytest.raises(ValueError, match="root"):
        PairedTrainDataset()


def test_benchmark_reports_both_paths(coord_root):
    from benchmarks.data_loading import main as bench

    threads = torch.get_num_threads()
    results = bench(["--root", str(coord_root), "--patch", "16", "--seconds", "0.05"])["results"]
    assert set(results) == {"release", "files", "store"}
    assert min(r["patches_per_s"] for r in results.values()) > 0
    assert torch.get_num_threads() == threads
