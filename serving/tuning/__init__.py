"""`tritium tune`: find a model version's serving config under a latency SLO, on a running Triton.

- :mod:`~tritium.serving.tuning.space`: the settings searched and their translation to Triton configs (pure).
- :mod:`~tritium.serving.tuning.search`: the concurrency sweep, quick and brute searches, the choice (pure).
- :mod:`~tritium.serving.tuning.measure`: loading candidates, checking answers, measuring with h2load (I/O).
- :mod:`~tritium.serving.tuning.loadgen`: the h2load gRPC driver (shared with benchmarks/).
- :mod:`~tritium.serving.tuning.session`: one run: resolve, search, restore, validity.
- :mod:`~tritium.serving.tuning.report`, :mod:`~tritium.serving.tuning.apply`, :mod:`~tritium.serving.tuning.cli`.
"""
