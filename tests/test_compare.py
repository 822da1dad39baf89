"""scripts/compare.py: the paper figure, the HTML page (looked at in headless Chromium) and its errors."""
from __future__ import annotations

import html
import importlib.util
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from data.folders import PairingError
from metrics.niqe import niqe
from metrics.psnr_ssim import score_y
from utils.image_io import ImageReadError, read_image, write_image

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _load_compare():
    spec = importlib.util.spec_from_file_location("compare_script", REPO / "scripts" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compare = _load_compare()


def _scene(rng, h, w) -> np.ndarray:
    """A smooth random picture (natural enough for NIQE), uint8 RGB."""
    small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(big.astype(np.int16) + rng.integers(-12, 13, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    """input/ (rain-*), target/ (norain-*), A/ and B/ (results), three 200x208 images and one portrait 232x200."""
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(200, 208), (200, 208), (232, 200)], start=1):
        clean = _scene(rng, h, w)
        rainy = clean.copy()
        rainy[:, ::9] = 250  # streaks
        write_image(tmp_path / "target" / f"norain-{i:03d}.png", clean)
        write_image(tmp_path / "input" / f"rain-{i:03d}.png", rainy)
        a = (0.7 * clean + 0.3 * rainy).astype(np.uint8)
        write_image(tmp_path / "A" / f"rain-{i:03d}.png", a)
        write_image(tmp_path / "B" / f"{i:03d}.png", clean // 2 + rainy // 2)
    return tmp_path


def _args(root: Path, out: str = "out", target: bool = True) -> list[str]:
    args = ["--methods", f"A={root / 'A'}", f"Method B={root / 'B'}", "--input", str(root / "input"),
            "--out", str(root / out), "--images", "002", "rain-003.png", "--panel-width", "200"]
    return args + (["--target", str(root / "target")] if target else [])


def test_figure_and_page_with_targets(folders):
    written = compare.main(_args(folders))
    fig = read_image(written["figure"])
    # Two rows (a landscape and a portrait image) of four 200-pixel panels: input, A, Method B, target.
    assert fig.shape[1] == 4 * 200 + 3 * 6 + 2 * 6
    assert fig.shape[0] > (200 * 200 // 208) + (232 * 200 // 200)
    # The zoom outline and inset border are drawn in red in every panel.
    red = (fig[..., 0] == 220) & (fig[..., 1] == 30) & (fig[..., 2] == 30)
    for k in range(4):
        assert red[:, 6 + k * 206 : 6 + k * 206 + 200].sum() > 200

    page = (folders / "out" / "index.html").read_text()
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)[1])
    assert data["panels"] == ["Input", "A", "Method B", "Target"]
    assert [s["key"] for s in data["scenes"]] == ["rain-001", "rain-002", "rain-003"]
    for scene in data["scenes"]:  # every image of the set, written beside the page
        for src in scene["src"].values():
            assert (folders / "out" / src).is_file() and not src.startswith(("/", "http"))
    s1 = data["scenes"][0]
    p, s = score_y(read_image(folders / "A" / "rain-001.png"), read_image(folders / "target" / "norain-001.png"))
    assert s1["caption"]["A"] == f"{p:.2f} dB / {s:.3f}" and s1["caption"]["Target"] == "ground truth"
    assert f'data-value="{p!r}"' in page
    assert "http://" not in page and "https://" not in page and "<link" not in page and "src=\"http" not in page


def test_niqe_without_targets_and_embedded_page(folders):
    written = compare.main(_args(folders, "real", target=False) + ["--embed", "--zoom", "10", "20", "40", "30"])
    page = Path(written["html"]).read_text()
    data = json.loads(re.search(r'id="data">(.*?)</script>', page, re.S)[1])
    assert data["panels"] == ["Input", "A", "Method B"]
    assert all(s["zoom"] == [10, 20, 40, 30] for s in data["scenes"])
    assert data["scenes"][1]["src"]["A"].startswith("data:image/png;base64,")
    assert not (folders / "real" / "images").exists()
    value = niqe(read_image(folders / "B" / "002.png"))
    assert data["scenes"][1]["caption"]["Method B"] == f"NIQE {value:.3f}"


def test_bad_input_is_a_named_error(folders):
    (folders / "B" / "002.png").unlink()
    with pytest.raises(PairingError, match=r"(?s)Method B .*without a partner.*rain-002\.png"):
        compare.main(_args(folders))
    write_image(folders / "B" / "002.png", read_image(folders / "A" / "rain-002.png")[:-4])
    with pytest.raises(PairingError, match=r"size mismatch: Method B .*002\.png is 208x196 but input .*rain-002"):
        compare.main(_args(folders))
    (folders / "B" / "002.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ImageReadError, match=r"002\.png"):
        compare.main(_args(folders))
    shutil.copy(folders / "A" / "rain-002.png", folders / "B" / "002.png")
    with pytest.raises(ValueError, match="no input named 009"):
        compare.main(_args(folders) + ["--images", "009"])
    with pytest.raises(ValueError, match="not inside"):
        compare.main(_args(folders) + ["--zoom", "190", "0", "40", "40"])
    with pytest.raises(ValueError, match="given twice"):
        compare.main(["--methods", f"A={folders / 'A'}", f"A={folders / 'B'}", "--input", str(folders / "input"),
                      "--out", str(folders / "x")])
    with pytest.raises(ValueError, match="names of the other panels"):
        compare.main(["--methods", f"target={folders / 'A'}", "--input", str(folders / "input"),
                      "--out", str(folders / "x")])


# --- looked at in a browser -------------------------------------------------------------------------------

_PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const loaded = imgs.filter((im) => im.complete && im.naturalWidth > 0).map((im) => im.getAttribute('src'));
  const order = () => Array.from(document.querySelectorAll('#scores tbody tr')).map((tr) => tr.dataset.name);
  const th = document.querySelector('#scores thead th[data-col="3"]');
  th.click();
  const asc = order(), ascState = th.getAttribute('aria-sort');
  th.click();
  const desc = order(), descState = th.getAttribute('aria-sort');
  document.querySelector('#scores tbody tr[data-name="rain-003"]').click();
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify({total: imgs.length, loaded, header: th.textContent, asc, ascState, desc,
    descState, shown: document.getElementById('name').textContent,
    crops: document.querySelectorAll('#crops .crop').length,
    warning: getComputedStyle(document.getElementById('warning')).display});
  document.body.append(pre);
});
</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--hide-scrollbars", "--force-device-scale-factor=1",
             "--force-color-profile=srgb", *args],
            capture_output=True, text=True, timeout=120,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _probe_result(probe) -> tuple[re.Match | None, str]:
    """Load ``probe`` (a page whose script appends ``<pre id="probe">``) and return that element's match.

    Headless Chromium now and then dumps the page before its asynchronous image decodes have settled
    under the virtual clock; up to three loads, so such a start does not fail the test.
    """
    for _ in range(3):
        run = _chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
        found = re.search(r'<pre id="probe">(.*?)</pre>', run.stdout, re.S)
        if found:
            break
    return found, run.stderr[-2000:]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (CI installs it: apt-get install chromium)")
def test_page_in_headless_chromium(folders):
    compare.main(_args(folders))
    out = folders / "out"
    page = (out / "index.html").read_text()

    # The page's own content: images load, the table sorts on a header click, a row click shows its image.
    probe = out / "probe.html"
    probe.write_text(page.replace("</body>", _PROBE + "</body>"))
    found, stderr = _probe_result(probe)
    assert found, stderr
    result = json.loads(found[1].replace("&quot;", '"').replace("&amp;", "&"))
    assert result["total"] == 2 and result["loaded"] == ["images/A/rain-001.png", "images/Input/rain-001.png"]
    assert result["warning"] == "none"
    assert result["header"].startswith("A PSNR")
    psnr_a = {f"rain-{i:03d}": score_y(read_image(folders / "A" / f"rain-{i:03d}.png"),
                                       read_image(folders / "target" / f"norain-{i:03d}.png"))[0] for i in (1, 2, 3)}
    assert result["asc"] == sorted(psnr_a, key=psnr_a.get) and result["ascState"] == "ascending"
    assert result["desc"] == sorted(psnr_a, key=psnr_a.get, reverse=True) and result["descState"] == "descending"
    assert result["shown"] == "rain-003 (200x232)" and result["crops"] == 4

    # What a person sees: a non-blank page with the image's own pixels at 1:1 (input left, method right).
    shot = folders / "shot.png"
    run = _chromium("--window-size=1200,1000", f"--screenshot={shot}", (out / "index.html").as_uri())
    assert shot.is_file(), run.stderr[-2000:]
    screen = read_image(shot)
    assert screen.std() > 20 and (screen < 250).mean() > 0.05
    for name, box in (("Input", (slice(60, 140), slice(10, 90))), ("A", (slice(60, 140), slice(120, 200)))):
        patch = np.ascontiguousarray(read_image(out / "images" / name / "rain-001.png")[box])
        score = cv2.matchTemplate(screen, patch, cv2.TM_CCOEFF_NORMED).max()
        assert score > 0.98, f"{name} pixels not on screen (best match {score:.3f})"


_NAMES_PROBE = """<script>
window.addEventListener('load', async () => {
  const rows = Array.from(document.querySelectorAll('#scores tbody tr'));
  const first = document.getElementById('name').textContent;
  rows.find((tr) => tr.dataset.name.startsWith('d<!--')).click();
  const data = JSON.parse(document.getElementById('data').textContent);
  const urls = data.scenes.flatMap((s) => Object.values(s.src));
  const loads = await Promise.all(urls.map((url) => {
    const im = new Image();
    im.src = url;
    return im.decode().then(() => im.naturalWidth > 0, () => false);
  }));
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify({urls: urls.length, loaded: loads.filter(Boolean).length,
    crops: Array.from(document.querySelectorAll('#crops .crop')).map((d) => d.style.backgroundImage),
    names: rows.map((tr) => tr.dataset.name), first, clicked: document.getElementById('name').textContent,
    options: Array.from(document.querySelectorAll('#after-choice option')).map((o) => o.value),
    title: document.title, warning: getComputedStyle(document.getElementById('warning')).display});
  document.body.append(pre);
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (CI installs it: apt-get install chromium)")
def test_page_with_hostile_names_in_headless_chromium(tmp_path):
    """Names with ``<!--``, ``</script>``, ``#``, ``%``, ``?``: the page works and every image loads."""
    stems = ["a#1", "b%41", "c?x=1", "d<!--<script>"]
    method = "M</script><!--"
    title = "</script><script>document.title='owned'</script>"
    rng = np.random.default_rng(1)
    for stem in stems:
        for folder in ("input", "target", "M"):
            write_image(tmp_path / folder / f"{stem}.png", _scene(rng, 40, 48))
    compare.main(["--methods", f"{method}={tmp_path / 'M'}", "--input", str(tmp_path / "input"), "--target",
                  str(tmp_path / "target"), "--out", str(tmp_path / "out"), "--title", title, "--panel-width", "64"])
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    probe = tmp_path / "out" / "probe.html"
    probe.write_text(page.replace("</body>", _NAMES_PROBE + "</body>"), encoding="utf-8")
    found, stderr = _probe_result(probe)
    assert found, stderr
    result = json.loads(html.unescape(found[1]))
    assert result["title"] == title and result["options"] == [method, "Target"]
    assert sorted(result["names"]) == sorted(stems)  # every row, each name intact
    assert result["first"] == "a#1 (48x40)" and result["clicked"] == "d<!--<script> (48x40)"
    assert result["urls"] == 12 and result["loaded"] == 12 and result["warning"] == "none"  # 4 images x 3 panels
    assert len(result["crops"]) == 3 and all("%3C%21--%3Cscript%3E" in c for c in result["crops"])
