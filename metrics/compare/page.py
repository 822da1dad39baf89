"""A self-contained HTML page for browsing a whole comparison offline.

One file, no external scripts, styles or fonts: the images are files beside
it (relative links) or embedded as ``data:`` URIs.  It shows

* a table of every image's scores per panel (PSNR/SSIM, or NIQE without
  targets) with the means on top; clicking a column header sorts by it
  (again: the other way), clicking a row shows that image;
* a before/after slider: the rainy input on the left of the handle, the
  chosen method (or the target) on the right, at the image's own size;
* the zoomed region of every panel side by side, magnified by pixel
  replication.

Images that fail to load (a moved folder) are counted in a warning at the top.
Names reach the page in two contexts, each escaped for it: HTML text and
attributes (:func:`html.escape`) and the JSON data block inside
``<script>`` (:func:`script_json`); image URLs come percent-encoded from the
caller, so ``#``, ``%`` or ``?`` in a file name do not cut the URL short.
An image NIQE is undefined for shows a dash and sorts after every score.
"""
from __future__ import annotations

import html
import json
import math

from .collect import INPUT, Scene, caption

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 8px}
#warning{display:none;background:#fdd;border:1px solid #c00;padding:6px;margin:8px 0}
#viewer{margin:12px 0}
.controls{margin:6px 0}
.box{display:inline-block;max-width:100%}
.slider{position:relative;line-height:0}
.slider img{display:block;max-width:100%;height:auto}
#before{position:absolute;left:0;top:0;clip-path:inset(0 50% 0 0)}
#handle{position:absolute;top:0;bottom:0;left:50%;width:2px;background:#fff;box-shadow:0 0 2px #000;pointer-events:none}
#pos{display:block;width:100%;margin:4px 0}
#crops{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}
#crops figure{margin:0;text-align:center}
.crop{border:2px solid rgb(220,30,30);background-repeat:no-repeat;image-rendering:pixelated}
table{border-collapse:collapse;margin-top:12px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3;cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}
th[aria-sort=descending]::after{content:" \\25BC"}
td:first-child,th:first-child{text-align:left}
tbody tr{cursor:pointer}
tbody tr:hover{background:#f6f9ff}
tr.current{background:#e3edff}
tfoot td{font-weight:bold}
"""

_SCRIPT = """
(function () {
  const data = JSON.parse(document.getElementById('data').textContent);
  const $ = (id) => document.getElementById(id);
  let current = 0;
  function show(i) {
    current = i;
    const s = data.scenes[i];
    const after = $('after-choice').value;
    $('name').textContent = s.key + ' (' + s.w + 'x' + s.h + ')';
    $('after').src = s.src[after];
    $('after').alt = after + ' ' + s.key;
    $('before').src = s.src['Input'];
    $('before').alt = 'Input ' + s.key;
    const [x, y, w, h] = s.zoom;
    const mag = Math.max(1, Math.floor(data.crop / Math.max(w, h)));
    const crops = $('crops');
    crops.textContent = '';
    for (const p of data.panels) {
      const fig = document.createElement('figure');
      const d = document.createElement('div');
      d.className = 'crop';
      d.style.width = (w * mag) + 'px';
      d.style.height = (h * mag) + 'px';
      d.style.backgroundImage = 'url("' + s.src[p] + '")';
      d.style.backgroundSize = (s.w * mag) + 'px ' + (s.h * mag) + 'px';
      d.style.backgroundPosition = (-x * mag) + 'px ' + (-y * mag) + 'px';
      const cap = document.createElement('figcaption');
      cap.textContent = p + ': ' + s.caption[p];
      fig.append(d, cap);
      crops.append(fig);
    }
    for (const tr of document.querySelectorAll('#scores tbody tr')) {
      tr.classList.toggle('current', Number(tr.dataset.index) === i);
    }
  }
  function slide() {
    const v = $('pos').value;
    $('before').style.clipPath = 'inset(0 ' + (100 - v) + '% 0 0)';
    $('handle').style.left = v + '%';
  }
  function sortBy(th) {
    const col = Number(th.dataset.col);
    const dir = th.getAttribute('aria-sort') === 'ascending' ? 'descending' : 'ascending';
    for (const other of document.querySelectorAll('#scores thead th')) other.removeAttribute('aria-sort');
    th.setAttribute('aria-sort', dir);
    const body = document.querySelector('#scores tbody');
    const rows = Array.from(body.rows);
    const key = (tr) => tr.cells[col].dataset.value;
    rows.sort((a, b) => {
      const ka = key(a), kb = key(b);
      const c = col === 0 ? ka.localeCompare(kb, undefined, {numeric: true}) : Number(ka) - Number(kb);
      return dir === 'ascending' ? c : -c;
    });
    for (const tr of rows) body.append(tr);
  }
  for (const th of document.querySelectorAll('#scores thead th')) th.addEventListener('click', () => sortBy(th));
  for (const tr of document.querySelectorAll('#scores tbody tr')) {
    tr.addEventListener('click', () => show(Number(tr.dataset.index)));
  }
  $('after-choice').addEventListener('change', () => show(current));
  $('pos').addEventListener('input', slide);
  window.addEventListener('load', () => {
    const broken = Array.from(document.images).filter((im) => !(im.complete && im.naturalWidth > 0));
    if (broken.length) {
      $('warning').style.display = 'block';
      $('warning').textContent = broken.length + ' image(s) could not be loaded: ' +
        broken.map((im) => im.getAttribute('src')).join(', ');
    }
  });
  show(0);
  slide();
})();
"""


def _metric_columns(scenes: list[Scene]) -> list[tuple[str, str, str]]:
    """``(panel, metric, header)`` for every score column of the table."""
    cols = []
    for panel, metrics in scenes[0].scores.items():
        for m in metrics:
            cols.append((panel, m, f"{panel} {'PSNR' if m == 'psnr' else m.upper()}"))
    return cols


def _sort_key(value: float) -> str:
    """The number as JavaScript's ``Number()`` reads it back exactly (PSNR of identical images is Infinity;
    an undefined NIQE, NaN, sorts as Infinity: after every defined one, lower being better)."""
    return "Infinity" if value == math.inf or math.isnan(value) else repr(float(value))


def _fmt(metric: str, value: float) -> str:
    if math.isnan(value):
        return "&mdash;"
    return f"{value:.2f}" if metric == "psnr" else f"{value:.4f}" if metric == "ssim" else f"{value:.3f}"


def _mean(values: list[float]) -> float:
    """Mean of the defined values (NaN when there is none)."""
    defined = [v for v in values if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else math.nan


_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(data) -> str:
    """``data`` as JSON that is safe as the text of a ``<script>`` element.

    The HTML parser ends a script at ``</script`` and changes state at
    ``<!--`` whatever the JavaScript means, so no ``<`` (nor ``>``, ``&``)
    may appear raw: each becomes its ``\\uXXXX`` escape, which JSON reads back
    as the same character; U+2028/U+2029 too (line breaks to old JavaScript).
    """
    text = json.dumps(data, allow_nan=False, ensure_ascii=False)
    for char, escape in _SCRIPT_ESCAPES.items():
        text = text.replace(char, escape)
    return text


def build_page(scenes: list[Scene], srcs: list[dict[str, str]], zooms: list[tuple[int, int, int, int]],
               title: str, crop_size: int = 192) -> str:
    """The page's HTML; ``srcs[i][panel]`` is the URL (relative path or data URI) of that panel's image."""
    if not scenes:
        raise ValueError("no images to show")
    panels = list(scenes[0].files)
    methods = [p for p in panels if p not in (INPUT,)]
    cols = _metric_columns(scenes)
    data = {
        "panels": panels,
        "crop": crop_size,
        "scenes": [
            {"key": s.key, "w": s.size[0], "h": s.size[1], "zoom": list(z), "src": src,
             "caption": {p: caption(s, p) for p in panels}}
            for s, src, z in zip(scenes, srcs, zooms)
        ],
    }
    payload = script_json(data)
    esc = html.escape
    head = "".join(f'<th data-col="{i + 1}" title="click to sort">{esc(h)}</th>' for i, (_, _, h) in enumerate(cols))
    rows = []
    for i, s in enumerate(scenes):
        cells = "".join(
            f'<td data-value="{_sort_key(s.scores[p][m])}">{_fmt(m, s.scores[p][m])}</td>' for p, m, _ in cols
        )
        rows.append(f'<tr data-index="{i}" data-name="{esc(s.key)}"><td data-value="{esc(s.key)}">{esc(s.key)}</td>'
                    f"{cells}</tr>")
    means = "".join(f"<td>{_fmt(m, _mean([s.scores[p][m] for s in scenes]))}</td>" for p, m, _ in cols)
    options = "".join(f'<option value="{esc(m)}">{esc(m)}</option>' for m in methods)
    notes = " NIQE: lower is better." if any(m == "niqe" for _, m, _ in cols) else ""
    undefined = sum(any(math.isnan(v) for sc in s.scores.values() for v in sc.values()) for s in scenes)
    if undefined:
        notes += f" NIQE is undefined for {undefined} image(s) (too small or flat): shown as &mdash;."
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{esc(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{esc(title)}</h1>
<div id="warning" role="alert"></div>
<p>{len(scenes)} images; panels: {esc(", ".join(panels))}.{notes} Click a row to view it, a header to sort.</p>
<div id="viewer">
<div class="controls"><strong id="name"></strong> &mdash; left: Input, right:
<select id="after-choice" aria-label="method shown right of the slider">{options}</select></div>
<div class="box"><div class="slider"><img id="after" alt=""><img id="before" alt=""><div id="handle"></div></div>
<input id="pos" type="range" min="0" max="100" value="50" aria-label="slider position"></div>
<div id="crops"></div>
</div>
<table id="scores"><thead><tr><th data-col="0" title="click to sort">image</th>{head}</tr></thead>
<tbody>{"".join(rows)}</tbody>
<tfoot><tr><td>mean</td>{means}</tr></tfoot></table>
<script type="application/json" id="data">{payload}</script>
<script>{_SCRIPT}</script>
</body></html>
"""

