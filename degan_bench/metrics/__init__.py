"""FID, KID and IS under named protocols, with verified feature-extractor weights.

- :mod:`~degan_bench.metrics.protocols`: the protocol registry (``fid5k_train``, ``fid50k_full``,
  ``fid10k_test``, ``kid*``, ``is10k``, ``*_clean``), comparability fingerprints;
- :mod:`~degan_bench.metrics.weights`: standard Inception weights, sha256-verified, offline paths;
- :mod:`~degan_bench.metrics.features`: torch-fidelity / clean-fid feature extraction;
- :mod:`~degan_bench.metrics.reference`: reference sets and content-keyed statistics cache;
- :mod:`~degan_bench.metrics.evaluate`: ``evaluate_generator(_many)``, ``evaluate_images(_many)``;
- :mod:`~degan_bench.metrics.run_eval`: ``evaluate_run`` (run directories, pending records);
- :mod:`~degan_bench.metrics.standin`: seeded stand-in weights for tests and offline smoke runs.
"""
