"""The thread store in a SQLite file (``--db FILE``), with exactly the in-memory store's behaviour.

Job: keep Langbase threads and messages across restarts, and share them between server
processes, using ``sqlite3`` from the standard library. The rules (bounds, ids, copies, errors)
are ``threads.ThreadStore``'s; this class only replaces its primitive reads and writes with SQL,
so both backends behave the same by construction, and the same tests run against both.

Durability: the file is in WAL mode with ``synchronous=NORMAL`` (https://sqlite.org/wal.html).
A call returns only after its transaction has committed, that is after its WAL frames were
written to the operating system, so killing the process (even ``SIGKILL``) loses no write that
was acknowledged; a power loss or kernel crash may lose the last ones since the latest
checkpoint. Checkpoints, which copy the WAL into the database and ``fsync``, run on a
background thread (``CHECKPOINT_SECONDS``), not on the thread that serves requests: the commits
made there cost ``write`` calls into the page cache only (see docs/limits-and-security.md for
the measured times).

Several processes may use one file: each write is one ``BEGIN IMMEDIATE`` transaction (the
file's write lock is taken before the bounds are read, so two processes cannot both pass a bound
or lose each other's update), and a process waits up to ``busy_seconds`` for the other's
transaction; past that the call raises ``StoreBusy``.

Kept here: threads and their messages. The other stores (pipes, memories, the run log, traces,
token streams) stay in memory.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional

from threads import StoreBusy, ThreadStore, _Thread, new_uuid4

__all__ = ["SqliteThreadStore", "CHECKPOINT_SECONDS", "SCHEMA_VERSION"]

CHECKPOINT_SECONDS = 1.0
"""How often the background thread copies the WAL into the database file."""

SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of files this module writes; a file with another version is refused."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS threads (
    id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, metadata TEXT NOT NULL,
    count INTEGER NOT NULL, bytes INTEGER NOT NULL, next_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    thread_id TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (thread_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS totals (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO totals VALUES ('threads', 0), ('bytes', 0);
"""
"""Tables: ``threads`` (one row per thread: metadata as JSON, message count, bytes as
``threads.stored_bytes`` counts them, the next message's ``seq``), ``messages`` (each stored
message object as JSON, in ``seq`` order per thread) and ``totals`` (thread count and bytes over
all threads, kept in the same transactions so a bound check reads one row)."""


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class SqliteThreadStore(ThreadStore):
    """``threads.ThreadStore`` kept in the SQLite file at ``path`` (created if missing).

    Args: as ``ThreadStore`` (``clock``, ``new_id``, ``max_threads``, ``max_messages``,
    ``max_bytes``; the bounds apply to the file, over every process sharing it), plus
    ``busy_seconds`` (how long a call waits for another process's transaction before
    ``threads.StoreBusy``).

    Raises ``sqlite3.Error`` (or ``ValueError`` for a file of another schema version) when the
    file cannot be opened. Call ``close`` when done: it stops the checkpoint thread and
    closes the connections.
    """

    def __init__(self, path: str, *, clock: Callable[[], float] = time.time,
                 new_id: Callable[[], str] = new_uuid4, max_threads: int = 100_000,
                 max_messages: int = 10_000, max_bytes: int = 256 * 1024 * 1024,
                 busy_seconds: float = 5.0) -> None:
        super().__init__(clock=clock, new_id=new_id, max_threads=max_threads, max_messages=max_messages,
                         max_bytes=max_bytes)
        self.path = path
        self._busy_seconds = busy_seconds
        self._db = self._connect()
        try:
            self._db.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpoint thread does it
            with self._transaction(True):
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                if version not in (0, SCHEMA_VERSION):
                    raise ValueError("%s has schema version %d; this server writes version %d"
                                     % (path, version, SCHEMA_VERSION))
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute("PRAGMA user_version = %d" % SCHEMA_VERSION)
        except BaseException:
            self._db.close()
            raise
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="sqlite-checkpoint", daemon=True)
        self._checkpointer.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self._busy_seconds, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        return db

    def _checkpoint_loop(self) -> None:
        db = self._connect()
        try:
            while not self._stop.wait(CHECKPOINT_SECONDS):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    pass  # another process holds the file; the next round catches up
        finally:
            db.close()

    def close(self) -> None:
        """Stop the checkpoint thread, checkpoint the WAL and close the file. Safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._checkpointer.join()
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # another process is using the file; its own close will checkpoint
            self._db.close()

    # --- primitives (see ThreadStore) ------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[None]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.OperationalError as exc:
                raise StoreBusy("the thread database %s is busy (%s); try again" % (self.path, exc)) from None
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _find(self, thread_id: str) -> Optional[_Thread]:
        row = self._db.execute("SELECT id, created_at, metadata, count, bytes FROM threads WHERE id = ?",
                               (thread_id,)).fetchone()
        if row is None:
            return None
        return _Thread(row[0], row[1], json.loads(row[2]), row[3], row[4])

    def _total(self, name: str) -> int:
        return self._db.execute("SELECT value FROM totals WHERE name = ?", (name,)).fetchone()[0]

    def _add_totals(self, threads: int, size: int) -> None:
        self._db.execute("UPDATE totals SET value = value + CASE name WHEN 'threads' THEN ? ELSE ? END",
                         (threads, size))

    def _thread_count(self) -> int:
        return self._total("threads")

    def _used_bytes(self) -> int:
        return self._total("bytes")

    def _insert_thread(self, thread: _Thread) -> None:
        self._db.execute("INSERT INTO threads VALUES (?, ?, ?, 0, ?, 0)",
                         (thread.id, thread.created_at, _json(thread.metadata), thread.bytes))
        self._add_totals(1, thread.bytes)

    def _set_metadata(self, thread: _Thread, metadata: Dict[str, str], grow: int) -> None:
        thread.metadata = metadata
        thread.bytes += grow
        self._db.execute("UPDATE threads SET metadata = ?, bytes = bytes + ? WHERE id = ?",
                         (_json(metadata), grow, thread.id))
        self._add_totals(0, grow)

    def _remove_thread(self, thread: _Thread) -> None:
        self._db.execute("DELETE FROM messages WHERE thread_id = ?", (thread.id,))
        self._db.execute("DELETE FROM threads WHERE id = ?", (thread.id,))
        self._add_totals(-1, -thread.bytes)

    def _remove_all(self) -> int:
        count = self._thread_count()
        self._db.execute("DELETE FROM messages")
        self._db.execute("DELETE FROM threads")
        self._db.execute("UPDATE totals SET value = 0")
        return count

    def _insert_messages(self, thread: _Thread, stored: List[dict], encoded: List[bytes], size: int) -> None:
        if not stored:
            return
        first = self._db.execute("SELECT next_seq FROM threads WHERE id = ?", (thread.id,)).fetchone()[0]
        self._db.executemany("INSERT INTO messages VALUES (?, ?, ?, ?)",
                             [(thread.id, first + i, m["id"], body.decode("utf-8", "surrogatepass"))
                              for i, (m, body) in enumerate(zip(stored, encoded))])
        self._db.execute("UPDATE threads SET count = count + ?, bytes = bytes + ?, next_seq = next_seq + ? "
                         "WHERE id = ?", (len(stored), size, len(stored), thread.id))
        thread.count += len(stored)
        thread.bytes += size
        self._add_totals(0, size)

    def _messages(self, thread: _Thread) -> List[dict]:
        return [json.loads(body) for (body,) in self._db.execute(
            "SELECT body FROM messages WHERE thread_id = ? ORDER BY seq", (thread.id,))]

    def _message_ids(self, thread: _Thread) -> set:
        return {mid for (mid,) in self._db.execute("SELECT id FROM messages WHERE thread_id = ?", (thread.id,))}
