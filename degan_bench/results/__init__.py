"""The run store, reported numbers, leaderboards and plots.

- :mod:`~degan_bench.results.reported`: ``results/reported.csv`` (the papers' numbers) and its schema;
- :mod:`~degan_bench.results.store`: run directories under one or more roots, and which metric record
  stands for a run;
- :mod:`~degan_bench.results.tables`: table definitions (``recipes/tables/*.yaml``) and per-cell
  aggregation, verdicts, flags and each source's claimed ordering;
- :mod:`~degan_bench.results.ranking`: who wins among our numbers, and the significance rule for bold;
- :mod:`~degan_bench.results.numbers`: the one number-format policy (KID ×10³, decimals, Δ);
- :mod:`~degan_bench.results.render`: the tidy frame, page composition, index, CSV / JSON, files;
- :mod:`~degan_bench.results.blocks`: page blocks written as Markdown, HTML (markdown-it-py, pandas
  Styler) and LaTeX (Styler);
- :mod:`~degan_bench.results.charts`: matplotlib charts with deterministic SVG (the one curve function);
- :mod:`~degan_bench.results.media`: a page's pictures (curves, who wins, sample panels) under ``media/``;
- :mod:`~degan_bench.results.memorisation`: nearest training images and precision / recall (low-shot);
- :mod:`~degan_bench.results.plots`: the per-run figure.
"""
