"""Headline claims of the papers as checkable data (``recipes/claims/<name>.yaml``).

- :mod:`~degan_bench.claims.definition`: the claim files (cells, checks, the paper's own numbers);
- :mod:`~degan_bench.claims.check`: verdicts from the run store, with the leaderboards' tolerances and
  t-intervals (:mod:`degan_bench.results.tables`);
- :mod:`~degan_bench.claims.plan`: the missing cells as sweep jobs, cheapest first (``claims check --run``);
- :mod:`~degan_bench.claims.page`: the claims page beside the leaderboards;
- :mod:`~degan_bench.claims.run_report`: the reported number of a run's cell next to ours, when
  ``degan-bench run`` ends.
"""
