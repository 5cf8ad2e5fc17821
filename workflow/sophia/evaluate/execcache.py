"""Results of (solution, generated test) executions, cached by content hash in one SQLite file.

A key is the sha256 of the solution's source together with everything that shapes an outcome
(the batch harness, per-test time limit, sandbox limits and isolation); a test is keyed by its
own hash. So a rerun with more tests, or another job that drew the same solution, runs only the
pairs it has not seen. Several evaluate jobs share the file: SQLite's locking serialises writers,
and a lost race only costs a re-execution.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS definitions (solution TEXT PRIMARY KEY, error TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS test_outcomes (solution TEXT, test TEXT, code TEXT, detail TEXT NOT NULL,
                                          PRIMARY KEY (solution, test));
"""


def digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


class Cache:
    """`definitions`: whether a solution's own code loads (error type if not), for any test set;
    `test_outcomes`: one letter per (solution, test) and what the test saw (the value the tested
    call returned, or the error), the execution result LEVER's verifier and self-debugging read."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._db: sqlite3.Connection | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=120)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def definition(self, solution: str) -> str | None:
        """None: never run; "": it loads; otherwise the error type that stopped it loading."""
        if self._db is None:
            return None
        row = self._db.execute("SELECT error FROM definitions WHERE solution = ?", (solution,)).fetchone()
        return row[0] if row else None

    def outcomes(self, solution: str, tests: Sequence[str]) -> dict[str, tuple[str, str]]:
        """(letter, detail) of each of `tests` run before against `solution`."""
        if self._db is None or not tests:
            return {}
        found: dict[str, tuple[str, str]] = {}
        for i in range(0, len(tests), 500):  # SQLite's bound-parameter limit
            chunk = list(tests[i: i + 500])
            marks = ",".join("?" * len(chunk))
            for test, code, detail in self._db.execute(
                    f"SELECT test, code, detail FROM test_outcomes WHERE solution = ? AND test IN ({marks})",
                    (solution, *chunk)):
                found[test] = (code, detail)
        return found

    def store(self, solution: str, definition: str, outcomes: Iterable[tuple[str, str, str]]) -> None:
        """`definition`: "" when the solution loaded, else its error (see `definition`); `outcomes`:
        (test key, letter, detail)."""
        if self._db is None:
            return
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO definitions VALUES (?, ?)", (solution, definition))
            self._db.executemany("INSERT OR REPLACE INTO test_outcomes VALUES (?, ?, ?, ?)",
                                 [(solution, t, c, d) for t, c, d in outcomes])
