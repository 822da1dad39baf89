"""Visual comparisons of deraining results: paper figures (PNG) and a browsable HTML page (``scripts/compare.py``)."""
