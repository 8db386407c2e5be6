"""Outcome windows shared by the gateway processes of one host, in one SQLite file.

Each process records its own outcomes in memory (gateway/stats.py) and publishes the seconds it
touched about once a second, one row per (process, model, variant, second), replaced while the
second is still filling. The canary controller (one process) reads every process's rows, so it
judges a canary on all of the traffic, not on the share one process happened to serve.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path

from tritium.gateway.feedback import FeedbackCounts, Served
from tritium.gateway.shadow_compare import AgreementCounts
from tritium.gateway.stats import OutcomeWindows, SecondCounts, WindowSummary, merge, summarize

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outcomes (
    process TEXT NOT NULL,
    model TEXT NOT NULL,
    variant TEXT NOT NULL,
    second INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    latency_bins TEXT NOT NULL,
    PRIMARY KEY (model, variant, second, process)
);
CREATE INDEX IF NOT EXISTS outcomes_by_second ON outcomes (second);
CREATE TABLE IF NOT EXISTS served (
    request_id TEXT NOT NULL,
    model TEXT NOT NULL,
    arm TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (request_id, model)
);
CREATE INDEX IF NOT EXISTS served_by_time ON served (at);
CREATE TABLE IF NOT EXISTS feedback (
    process TEXT NOT NULL,
    model TEXT NOT NULL,
    arm TEXT NOT NULL,
    second INTEGER NOT NULL,
    judged INTEGER NOT NULL,
    correct INTEGER NOT NULL,
    rewarded INTEGER NOT NULL,
    reward_sum REAL NOT NULL,
    reward_squares REAL NOT NULL,
    PRIMARY KEY (model, arm, second, process)
);
CREATE TABLE IF NOT EXISTS agreement (
    process TEXT NOT NULL,
    model TEXT NOT NULL,
    alias TEXT NOT NULL,
    second INTEGER NOT NULL,
    rows_compared INTEGER NOT NULL,
    score_sum REAL NOT NULL,
    undecodable INTEGER NOT NULL,
    PRIMARY KEY (model, alias, second, process)
);
"""
_PRUNE_EVERY_S = 60


class SharedOutcomes:
    def __init__(self, path: Path, process: str, retention_s: int = 3600) -> None:
        self.path = path
        self.process = process
        self.retention_s = retention_s
        self.published_upto = 0.0
        self._pruned_at = 0.0
        with self._connection() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        # A connection per call: calls come from worker threads, and a write lock is held only briefly.
        with closing(sqlite3.connect(self.path, timeout=10.0)) as db, db:
            yield db

    def snapshot(self, windows: OutcomeWindows) -> list[tuple[str, str, int, SecondCounts]]:
        """What to publish: the seconds touched since the last successful publication (call on the
        event loop; after `publish` succeeds, set `published_upto` to the time of the snapshot)."""
        return windows.seconds_since(self.published_upto - 1)

    def publish(
        self,
        rows: list[tuple[str, str, int, SecondCounts]],
        now: float,
        served: Sequence[tuple[str, Served]] = (),
        feedback: Sequence[tuple[str, str, int, FeedbackCounts]] = (),
        agreement: Sequence[tuple[str, str, int, AgreementCounts]] = (),
    ) -> None:
        """Write a snapshot — outcome seconds, request ids answered, feedback seconds; about once a
        minute also drop rows past the retention (blocking: run in a thread)."""
        with self._connection() as db:
            db.executemany(
                "INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (self.process, model, variant, second, c.requests, c.errors, json.dumps(c.latency_bins))
                    for model, variant, second, c in rows
                ],
            )
            db.executemany(
                "INSERT OR REPLACE INTO served VALUES (?, ?, ?, ?)",
                [(request_id, s.model, s.arm, s.at) for request_id, s in served],
            )
            db.executemany(
                "INSERT OR REPLACE INTO feedback VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        self.process,
                        model,
                        arm,
                        second,
                        f.judged,
                        f.correct,
                        f.rewarded,
                        f.reward_sum,
                        f.reward_squares,
                    )
                    for model, arm, second, f in feedback
                ],
            )
            db.executemany(
                "INSERT OR REPLACE INTO agreement VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (self.process, model, alias, second, a.rows, a.score_sum, a.undecodable)
                    for model, alias, second, a in agreement
                ],
            )
            if now - self._pruned_at >= _PRUNE_EVERY_S:
                oldest = int(now) - self.retention_s
                db.execute("DELETE FROM agreement WHERE second < ?", (oldest,))
                db.execute("DELETE FROM outcomes WHERE second < ?", (oldest,))
                db.execute("DELETE FROM served WHERE at < ?", (oldest,))
                db.execute("DELETE FROM feedback WHERE second < ?", (oldest,))
                self._pruned_at = now

    def served(self, request_id: str, model: str, after: float) -> Served | None:
        """Which arm of `model` answered `request_id`, in any process, if after `after` (blocking)."""
        with self._connection() as db:
            row = db.execute(
                "SELECT arm, at FROM served WHERE request_id = ? AND model = ? AND at > ?",
                (request_id, model, after),
            ).fetchone()
        return None if row is None else Served(model, row[0], row[1])

    def merged_agreement(self, model: str, alias: str, since: float) -> AgreementCounts:
        """All processes' shadow agreement from the second holding `since` on (blocking)."""
        with self._connection() as db:
            row = db.execute(
                "SELECT COALESCE(SUM(rows_compared), 0), COALESCE(SUM(score_sum), 0.0), COALESCE(SUM(undecodable), 0) "
                "FROM agreement WHERE model = ? AND alias = ? AND second >= ?",
                (model, alias, int(since)),
            ).fetchone()
        return AgreementCounts(*row)

    def merged_feedback(self, model: str, arm: str, since: float) -> FeedbackCounts:
        """All processes' feedback on an arm from the second holding `since` on (blocking)."""
        with self._connection() as db:
            row = db.execute(
                "SELECT COALESCE(SUM(judged), 0), COALESCE(SUM(correct), 0), COALESCE(SUM(rewarded), 0), "
                "COALESCE(SUM(reward_sum), 0.0), COALESCE(SUM(reward_squares), 0.0) FROM feedback "
                "WHERE model = ? AND arm = ? AND second >= ?",
                (model, arm, int(since)),
            ).fetchone()
        return FeedbackCounts(*row)

    def summary(self, model: str, variant: str, *, since: float) -> WindowSummary:
        """All processes' outcomes from the second holding `since` on (blocking: run in a thread)."""
        return summarize([self.merged(model, variant, since=since)])

    def merged(self, model: str, variant: str, *, since: float) -> SecondCounts:
        """All processes' counts from the second holding `since` on, added up (blocking)."""
        with self._connection() as db:
            rows = db.execute(
                "SELECT requests, errors, latency_bins FROM outcomes "
                "WHERE model = ? AND variant = ? AND second >= ?",
                (model, variant, int(since)),
            ).fetchall()
        return merge(
            SecondCounts(requests, errors, Counter({int(k): v for k, v in json.loads(bins).items()}))
            for requests, errors, bins in rows
        )

    def forget(self, model: str) -> None:
        with self._connection() as db:
            db.execute("DELETE FROM outcomes WHERE model = ?", (model,))


def process_name() -> str:
    """Unique per process, also when a PID is reused after a restart."""
    return f"{os.getpid()}@{time.time():.0f}"
