"""The run store, reported numbers, leaderboards and plots.

- :mod:`~degan_bench.results.reported`: ``results/reported.csv`` (the papers' numbers) and its schema;
- :mod:`~degan_bench.results.store`: run directories under one or more roots, and which metric record
  stands for a run;
- :mod:`~degan_bench.results.tables`: table definitions (``recipes/tables/*.yaml``) and per-cell
  aggregation, verdicts and flags;
- :mod:`~degan_bench.results.render`: Markdown / HTML / CSV / JSON leaderboards;
- :mod:`~degan_bench.results.media`: per-cell curves and sample grids, per-table charts;
- :mod:`~degan_bench.results.svg`: the deterministic SVG charts they are drawn with;
- :mod:`~degan_bench.results.plots`: per-run matplotlib figures.
"""
