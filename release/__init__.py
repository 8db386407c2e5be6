"""`tritium release`: a built version from recipe to promoted or rolled back, in one command.

- :mod:`tritium.release.record`: the release record (phases, decisions, evidence), kept as JSON and
  markdown under ``releases/<model>/``; what `--resume`, `tritium releases` and `tritium rollback` read.
- :mod:`tritium.release.plan`: pure decisions — the routes of each phase, judging a shadow and an A/B.
- :mod:`tritium.release.runner`: the phases against a running Triton and gateway, each idempotent.
- :mod:`tritium.release.cli`: the commands.
"""
