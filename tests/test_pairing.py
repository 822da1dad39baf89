"""data/folders.py: files pair by name (rain-/norain- style markers stripped), never by position."""
from __future__ import annotations

from pathlib import Path

import pytest

from data.folders import PairingError, pair_files, pair_key


@pytest.mark.parametrize(
    "name, key",
    [
        ("001.png", "001"),
        ("rain-001.png", "001"),
        ("norain-001.jpg", "001"),
        ("rain_12.png", "12"),
        ("NoRain_12.png", "12"),
        ("12_rain.png", "12"),
        ("12_rainy.png", "12"),
        ("12-clean.png", "12"),
        ("12_gt.png", "12"),
        ("rain.png", "rain"),  # a bare marker is a name, not a marker
        ("brain-3.png", "brain-3"),
        ("rain-rain-3.png", "rain-3"),  # only one marker is removed from each end
        ("img.v2.png", "img.v2"),
    ],
)
def test_pair_key(name, key):
    assert pair_key(name) == key


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def test_pairs_by_name_in_natural_order(tmp_path):
    _touch(tmp_path / "a", "rain-10.png", "rain-2.png", "rain-1.png", "notes.txt")
    _touch(tmp_path / "b", "norain-1.jpg", "norain-2.jpg", "norain-10.jpg")
    pairs = pair_files(tmp_path / "a", tmp_path / "b")
    assert [(a.name, b.name) for a, b in pairs] == [
        ("rain-1.png", "norain-1.jpg"),
        ("rain-2.png", "norain-2.jpg"),
        ("rain-10.png", "norain-10.jpg"),
    ]


def test_missing_and_extra_files_are_listed(tmp_path):
    _touch(tmp_path / "a", "1.png", "2.png", "3.png", "7.png")
    _touch(tmp_path / "b", "1.png", "2.png", "4.png")
    with pytest.raises(PairingError) as err:
        pair_files(tmp_path / "a", tmp_path / "b")
    msg = str(err.value)
    assert "2 in" in msg and "3.png, 7.png" in msg
    assert "1 in" in msg and "4.png" in msg


def test_two_files_with_one_key_are_an_error(tmp_path):
    _touch(tmp_path / "a", "1.png", "rain-1.png")
    _touch(tmp_path / "b", "1.png")
    with pytest.raises(PairingError, match=r"1\.png and rain-1\.png both pair as '1'"):
        pair_files(tmp_path / "a", tmp_path / "b")


def test_missing_or_empty_folders(tmp_path):
    _touch(tmp_path / "a", "1.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PairingError, match="not a folder"):
        pair_files(tmp_path / "a", tmp_path / "nope")
    with pytest.raises(PairingError, match="no images in .*empty"):
        pair_files(tmp_path / "a", tmp_path / "empty")
