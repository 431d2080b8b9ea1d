"""The curation store: abstracts, generations, candidates and decisions in one SQLite file.

Decisions are an append-only log and each is committed the moment it is made, so nothing the user saw
acknowledged is lost to a crash. What has been curated is derived from that log by SQL views, never
stored twice. The file runs in WAL mode so an export can read one consistent snapshot while the TUI
keeps writing, with synchronous=FULL so an acknowledged decision also survives a power cut (a person
makes at most a few decisions a second; an fsync each costs nothing they could notice).

Abstracts are stored whitespace-normalised and in Unicode's composed form (NFC): the form the model sees
and the key for de-duplication. Titles, edited texts and reasons are stored exactly as given.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import threading
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlite_utils

from core.errors import StoreUnavailable, TitlecraftError
from core.paths import refuse_file_in_the_way
from core.prompts import normalise_whitespace

DEFAULT_DB_PATH = Path("data") / "titlecraft.db"
DB_PATH_ENV = "TITLECRAFT_DB"
BUSY_TIMEOUT_SECONDS = 5.0
SQLITE_HEADER = b"SQLite format 3\x00"

ACCEPT, EDIT, REJECT, OWN_TITLE, UNDO = "accept", "edit", "reject", "own_title", "undo"
ACTIONS = (ACCEPT, EDIT, REJECT, OWN_TITLE, UNDO)

# Each migration is the statements that take the schema from version i to i + 1 (PRAGMA user_version).
# Old migrations are never edited: databases made by every earlier titlecraft must still upgrade.
_SCHEMA_V1 = (
    """CREATE TABLE abstracts (
        id INTEGER PRIMARY KEY,
        content_hash TEXT NOT NULL UNIQUE,
        text TEXT NOT NULL,
        source TEXT NOT NULL,
        arxiv_id TEXT,
        reference_title TEXT,
        categories TEXT,
        date TEXT,
        added_at TEXT NOT NULL
    )""",
    """CREATE TABLE generations (
        id INTEGER PRIMARY KEY,
        abstract_id INTEGER NOT NULL REFERENCES abstracts(id),
        model_spec TEXT NOT NULL,
        model_id TEXT NOT NULL,
        params TEXT NOT NULL,
        seed INTEGER,
        device TEXT,
        seconds REAL,
        first_token_seconds REAL,
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE candidates (
        id INTEGER PRIMARY KEY,
        generation_id INTEGER NOT NULL REFERENCES generations(id),
        rank INTEGER NOT NULL,
        text TEXT NOT NULL,
        score REAL,
        flags TEXT NOT NULL,
        UNIQUE (generation_id, rank)
    )""",
    """CREATE TABLE decisions (
        id INTEGER PRIMARY KEY,
        abstract_id INTEGER NOT NULL REFERENCES abstracts(id),
        candidate_id INTEGER REFERENCES candidates(id),
        action TEXT NOT NULL CHECK (action IN ('accept', 'edit', 'reject', 'own_title', 'undo')),
        text TEXT,
        reason TEXT,
        undoes INTEGER UNIQUE REFERENCES decisions(id),
        decided_at TEXT NOT NULL,
        CHECK ((action IN ('accept', 'edit', 'reject')) = (candidate_id IS NOT NULL)),
        CHECK ((action IN ('edit', 'own_title')) = (text IS NOT NULL)),
        CHECK ((action = 'undo') = (undoes IS NOT NULL))
    )""",
    """CREATE TRIGGER decisions_cannot_change BEFORE UPDATE ON decisions
    BEGIN SELECT RAISE(ABORT, 'decisions are an append-only log'); END""",
    """CREATE TRIGGER decisions_cannot_be_deleted BEFORE DELETE ON decisions
    BEGIN SELECT RAISE(ABORT, 'decisions are an append-only log'); END""",
    """CREATE TABLE queue (
        position INTEGER PRIMARY KEY,
        abstract_id INTEGER NOT NULL UNIQUE REFERENCES abstracts(id),
        queued_at TEXT NOT NULL
    )""",
    # A decision is live until an undo names it; undos themselves are never live (there is no redo).
    """CREATE VIEW live_decisions AS
    SELECT d.* FROM decisions AS d
    WHERE d.action != 'undo' AND NOT EXISTS (SELECT 1 FROM decisions AS u WHERE u.undoes = d.id)""",
    """CREATE VIEW curated_pairs AS
    SELECT a.id AS abstract_id, a.arxiv_id, a.text AS abstract,
           CASE WHEN d.action = 'accept' THEN c.text ELSE d.text END AS title,
           a.categories, a.date, a.source, a.reference_title,
           d.id AS decision_id, d.action, d.decided_at,
           c.id AS candidate_id, c.rank AS candidate_rank, c.score AS candidate_score,
           c.text AS candidate_text,
           g.id AS generation_id, g.model_spec, g.model_id, g.params, g.seed, g.device
    FROM (SELECT *, row_number() OVER (PARTITION BY abstract_id ORDER BY id DESC) AS recency
          FROM live_decisions WHERE action IN ('accept', 'edit', 'own_title')) AS d
    JOIN abstracts AS a ON a.id = d.abstract_id
    LEFT JOIN candidates AS c ON c.id = d.candidate_id
    LEFT JOIN generations AS g ON g.id = c.generation_id
    WHERE d.recency = 1""",
    # A candidate's verdict is its latest live decision: rejected, then accepted, counts as accepted.
    """CREATE VIEW candidate_verdicts AS
    SELECT * FROM (
        SELECT *, row_number() OVER (PARTITION BY candidate_id ORDER BY id DESC) AS recency
        FROM live_decisions WHERE candidate_id IS NOT NULL)
    WHERE recency = 1""",
    """CREATE VIEW rejected_candidates AS
    SELECT v.abstract_id, c.id AS candidate_id, c.text, c.rank, c.score, v.reason,
           v.id AS decision_id, v.decided_at, g.model_spec
    FROM candidate_verdicts AS v
    JOIN candidates AS c ON c.id = v.candidate_id
    JOIN generations AS g ON g.id = c.generation_id
    WHERE v.action = 'reject'""",
    """CREATE VIEW model_stats AS
    SELECT g.model_spec,
           count(*) AS candidates,
           count(v.id) AS decided,
           count(CASE WHEN v.action = 'accept' THEN 1 END) AS accepted,
           count(CASE WHEN v.action = 'edit' THEN 1 END) AS edited,
           count(CASE WHEN v.action = 'reject' THEN 1 END) AS rejected
    FROM candidates AS c
    JOIN generations AS g ON g.id = c.generation_id
    LEFT JOIN candidate_verdicts AS v ON v.candidate_id = c.id
    GROUP BY g.model_spec""",
)
# v2: settings the TUI remembers between sessions, and indexes that keep the views fast on long logs.
_SCHEMA_V2 = (
    """CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX decisions_by_abstract ON decisions (abstract_id, id)",
    "CREATE INDEX decisions_by_candidate ON decisions (candidate_id, id)",
    "CREATE INDEX generations_by_abstract ON generations (abstract_id)",
)
# v3: a candidate rejected after it was accepted or edited no longer titles its abstract; the curated
# title falls back to the latest earlier curation whose candidate was not rejected since.
_SCHEMA_V3 = (
    "DROP VIEW curated_pairs",
    """CREATE VIEW curated_pairs AS
    SELECT a.id AS abstract_id, a.arxiv_id, a.text AS abstract,
           CASE WHEN d.action = 'accept' THEN c.text ELSE d.text END AS title,
           a.categories, a.date, a.source, a.reference_title,
           d.id AS decision_id, d.action, d.decided_at,
           c.id AS candidate_id, c.rank AS candidate_rank, c.score AS candidate_score,
           c.text AS candidate_text,
           g.id AS generation_id, g.model_spec, g.model_id, g.params, g.seed, g.device
    FROM (SELECT *, row_number() OVER (PARTITION BY abstract_id ORDER BY id DESC) AS recency
          FROM live_decisions AS curation
          WHERE action IN ('accept', 'edit', 'own_title')
            AND NOT EXISTS (SELECT 1 FROM live_decisions AS later
                            WHERE later.candidate_id = curation.candidate_id AND later.id > curation.id
                              AND later.action = 'reject')) AS d
    JOIN abstracts AS a ON a.id = d.abstract_id
    LEFT JOIN candidates AS c ON c.id = d.candidate_id
    LEFT JOIN generations AS g ON g.id = c.generation_id
    WHERE d.recency = 1""",
)
MIGRATIONS = (_SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3)
SCHEMA_VERSION = len(MIGRATIONS)


def _tables_of_version(version: int) -> set[str]:
    """The tables a titlecraft database at schema ``version`` has: those its migrations created."""
    return {
        name
        for statements in MIGRATIONS[:version]
        for statement in statements
        for name in re.findall(r"CREATE TABLE (\w+)", statement)
    }


def default_db_path() -> Path:
    """The store used when no --db is given: $TITLECRAFT_DB, else data/titlecraft.db under the cwd.

    A quoted '~/tc.db' reaches us unexpanded by the shell, so ~ is expanded here."""
    return Path(os.environ.get(DB_PATH_ENV) or DEFAULT_DB_PATH).expanduser()


def _writable(path: Path) -> bool:
    # No write bit counts as read-only even for root, who could write anyway: the owner said so.
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & 0o222)


def normalise_abstract(text: str) -> str:
    """An abstract as stored: whitespace collapsed and accents composed (NFC). Text copied from a PDF
    viewer often spells "é" as "e" plus a combining accent; it is still the same abstract."""
    return unicodedata.normalize("NFC", normalise_whitespace(text))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def content_hash(text: str) -> str:
    """The identity of an abstract: pasted twice with different line breaks or accent encodings, it is
    still one abstract."""
    return _sha256(normalise_abstract(text))


def schema_version(db: sqlite_utils.Database) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def migrate(db: sqlite_utils.Database, target: int = SCHEMA_VERSION) -> None:
    """Bring the schema forward to ``target``, one version per write transaction.

    The version is re-read under the write lock, so two processes opening a new file at once do not
    both run a migration; an up-to-date database is only read, so opening it never waits for writers.
    """
    version = schema_version(db)
    while version < target:
        db.execute("BEGIN IMMEDIATE")
        try:
            version = schema_version(db)
            if version < target:
                for statement in MIGRATIONS[version]:
                    db.execute(statement)
                version += 1
                db.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            db.rollback()
            raise
        db.execute("COMMIT")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _require_title(text: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise TitlecraftError("a title cannot be empty")
    return text


@dataclass(frozen=True)
class Abstract:
    id: int
    text: str
    source: str
    arxiv_id: str | None
    reference_title: str | None
    categories: str | None
    date: str | None
    added_at: str


@dataclass(frozen=True)
class Candidate:
    id: int
    generation_id: int
    rank: int
    text: str
    score: float | None
    flags: tuple[str, ...]


@dataclass(frozen=True)
class Generation:
    """One recorded sampling call; ``params`` are whatever its caller recorded (the TUI's say if it was "more")."""

    id: int
    model_spec: str
    params: dict[str, Any]
    seconds: float | None
    created_at: str


@dataclass(frozen=True)
class Decision:
    """One entry of the log; ``title`` is the text it concerns (candidate, edited or own), None for undo."""

    id: int
    abstract_id: int
    candidate_id: int | None
    action: str
    title: str | None
    reason: str | None
    undoes: int | None
    decided_at: str
    undone: bool


@dataclass(frozen=True)
class CuratedPair:
    """The current title of an abstract, with where it came from."""

    abstract_id: int
    arxiv_id: str | None
    abstract: str
    title: str
    categories: str | None
    date: str | None
    source: str
    reference_title: str | None
    decision_id: int
    action: str
    decided_at: str
    candidate_id: int | None
    candidate_rank: int | None
    candidate_score: float | None
    candidate_text: str | None
    generation_id: int | None
    model_spec: str | None
    model_id: str | None
    params: dict[str, Any] | None
    seed: int | None
    device: str | None


@dataclass(frozen=True)
class RejectedCandidate:
    abstract_id: int
    candidate_id: int
    text: str
    rank: int
    score: float | None
    reason: str | None
    decision_id: int
    decided_at: str
    model_spec: str


@dataclass(frozen=True)
class ModelStats:
    """How one model's candidates fared; rates are over the candidates that got a live verdict."""

    model_spec: str
    candidates: int
    decided: int
    accepted: int
    edited: int
    rejected: int

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.decided if self.decided else None

    @property
    def edit_rate(self) -> float | None:
        return self.edited / self.decided if self.decided else None


@dataclass(frozen=True)
class QueueEntry:
    position: int
    abstract_id: int
    curated: bool


def _curated_pair(row: dict[str, Any]) -> CuratedPair:
    params = row.pop("params")
    return CuratedPair(**row, params=json.loads(params) if params is not None else None)


# Search matches title or abstract, both folded by _search_fold (SQLite's LIKE folds ASCII letters only).
_SEARCH_CONDITION = "(instr(search_fold(title), ?) OR instr(search_fold(abstract), ?))"


def _search_fold(text: str | None) -> str | None:
    """Text as search compares it: accents composed (a PDF viewer's "e" plus combining accent is "é")
    and case folded in every script ("Über" is "über", "STRASSE" is "straße")."""
    return None if text is None else unicodedata.normalize("NFC", text).casefold()


def _limit(limit: int | None, params: list[Any]) -> str:
    """The LIMIT clause for ``limit`` (none for None), its value appended to ``params``."""
    if limit is None:
        return ""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be a non-negative integer or None, not {limit!r}")
    params.append(limit)
    return " LIMIT ?"


class Store:
    """The titlecraft database. Safe to share between threads; each method is one transaction."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        create: bool = True,
        busy_timeout: float = BUSY_TIMEOUT_SECONDS,
        reads_only: bool = False,
    ) -> None:
        """``reads_only``: the caller never writes (stats, export), so a read-only file or folder is
        opened read-only instead of refused."""
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self.read_only = reads_only and self.path.is_file() and not (_writable(self.path) and _writable(self.path.parent))
        self._refuse_unusable_file(create)
        with self._sqlite_errors_explained():
            connection = sqlite3.connect(
                self._read_only_uri() if self.read_only else self.path,
                timeout=busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                uri=self.read_only,
            )
            try:
                connection.create_function("search_fold", 1, _search_fold, deterministic=True)
                self.db = sqlite_utils.Database(connection, execute_plugins=False)
                self.db.execute("PRAGMA foreign_keys = ON")
                self.db.execute("PRAGMA synchronous = FULL")
                version = schema_version(self.db)
                if version > SCHEMA_VERSION:
                    raise TitlecraftError(
                        f"the database {self.path} has schema version {version}, newer than this titlecraft "
                        f"understands ({SCHEMA_VERSION}); upgrade titlecraft to open it"
                    )
                self._refuse_foreign_schema(version)
                if self.read_only:
                    self._refuse_outdated_read_only(version)
                    return
                if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self.db.execute("PRAGMA journal_mode = WAL")
                migrate(self.db)
            except BaseException:
                connection.close()
                raise

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- opening and transactions ------------------------------------------------------------------

    def _refuse_unusable_file(self, create: bool) -> None:
        """Check the file before SQLite touches it, so a file we must not use is never modified."""
        path = self.path
        if not path.exists():
            if not create:
                raise TitlecraftError(f"there is no titlecraft database at {path}")
            refuse_file_in_the_way(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            return
        if not path.is_file():
            raise TitlecraftError(f"the database path {path} is not a file")
        if not self.read_only and not _writable(path):
            raise StoreUnavailable(
                f"the database {path} is read-only; titlecraft records every decision in it, so it needs "
                "write access (make it writable, or pass --db with a writable copy)"
            )
        if not self.read_only and not _writable(path.parent):
            folder = path.parent
            raise StoreUnavailable(
                f"the folder {folder} of the database is read-only; SQLite writes its journal files beside "
                f"{path.name}, so the folder needs write access too (or pass --db with a writable copy)"
            )
        with path.open("rb") as file:
            header = file.read(len(SQLITE_HEADER))
        if header and header != SQLITE_HEADER:
            raise TitlecraftError(self._not_a_database_message())

    def _refuse_foreign_schema(self, version: int) -> None:
        """Refuse another program's SQLite file before switching it to WAL or adding titlecraft's tables."""
        names = {
            row[0]
            for row in self.db.execute(
                "SELECT name FROM sqlite_master "
                "WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite!_%' ESCAPE '!'"
            )
        }
        if version == 0 and names:  # titlecraft sets the version in the transaction that creates its tables
            shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
            raise TitlecraftError(
                f"{self.path} is not a titlecraft database (it holds another program's tables: {shown}); "
                "titlecraft left it untouched. Pass --db with another path."
            )
        missing = _tables_of_version(version) - names
        if missing:
            raise TitlecraftError(
                f"{self.path} claims titlecraft schema version {version} but lacks its tables "
                f"({', '.join(sorted(missing))}): it is another program's database or a damaged one; "
                "titlecraft left it untouched. Pass --db with another path."
            )

    def _read_only_uri(self) -> str:
        """Without a -wal file no writer is active (titlecraft refuses read-only files for writing), so the
        file is opened immutable: SQLite then creates no -wal or -shm beside it, where it may not write."""
        wal = self.path.with_name(self.path.name + "-wal")
        return f"{self.path.resolve().as_uri()}?mode=ro" + ("" if wal.exists() else "&immutable=1")

    def _refuse_outdated_read_only(self, version: int) -> None:
        """A read-only store is read as it is, so it must already have this titlecraft's schema."""
        if version == 0:
            raise TitlecraftError(f"{self.path} holds no titlecraft data yet")
        if version < SCHEMA_VERSION:
            raise StoreUnavailable(
                f"the database {self.path} was made by an older titlecraft and is read-only, so it cannot be "
                "upgraded to be read: make it writable once (any titlecraft command upgrades it)"
            )

    def _not_a_database_message(self) -> str:
        return (
            f"{self.path} is not a SQLite database (or is corrupt); titlecraft left it untouched. "
            "Move it away or pass --db with another path."
        )

    @contextlib.contextmanager
    def _sqlite_errors_explained(self) -> Iterator[None]:
        """Turn SQLite's failures into messages that name the file and say what to do."""
        try:
            yield
        except sqlite3.OperationalError as error:
            name = getattr(error, "sqlite_errorname", "")
            if name.startswith("SQLITE_BUSY") or "locked" in str(error):
                message = (
                    f"the database {self.path} is locked by another process and stayed locked for "
                    f"{self.busy_timeout:g} s; close the other titlecraft session or try again"
                )
            elif name.startswith("SQLITE_READONLY"):
                message = f"the database {self.path} is read-only ({error}); titlecraft needs write access"
            elif name.startswith("SQLITE_CANTOPEN"):
                message = f"cannot open the database {self.path}: check that its folder exists and is writable"
            elif name.startswith("SQLITE_FULL"):
                message = f"the disk holding {self.path} is full; nothing was recorded"
            else:
                raise TitlecraftError(f"the database {self.path} failed: {error}") from error
            raise StoreUnavailable(message) from error
        except sqlite3.DatabaseError as error:
            if type(error) is not sqlite3.DatabaseError:  # integrity and programming errors are bugs
                raise
            raise TitlecraftError(self._not_a_database_message()) from error

    @contextlib.contextmanager
    def batch(self) -> Iterator[Store]:
        """Group many writes into one commit (bulk imports); nothing inside is durable until it ends.

        Inside a batch every write method runs in a savepoint, so one that fails leaves the rest intact.
        """
        with self._write():
            yield self

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        # BEGIN IMMEDIATE takes the write lock up front (waiting up to the busy timeout); a deferred
        # transaction that reads first could not wait for it and would fail at once instead.
        with self._lock, self._sqlite_errors_explained():
            if self.db.conn.in_transaction:
                with self.db.atomic():
                    yield
                return
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self.db.execute("COMMIT")
            except BaseException:
                self.db.rollback()
                raise

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Store]:
        """Make every read inside see the same committed state (exports read through this)."""
        with self._lock, self._sqlite_errors_explained():
            if self.db.conn.in_transaction:
                yield self
                return
            self.db.execute("BEGIN")
            try:
                # A WAL read transaction takes its snapshot at its first read, so read now.
                self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()
                yield self
            finally:
                self.db.rollback()

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock, self._sqlite_errors_explained():
            return list(self.db.query(sql, params))

    def _value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self._lock, self._sqlite_errors_explained():
            row = self.db.execute(sql, params).fetchone()
        return row[0] if row else None

    def _insert(self, table: str, record: dict[str, Any]) -> int:
        return self.db.table(table).insert(record).last_pk

    # -- abstracts ---------------------------------------------------------------------------------

    def find_abstract(self, text: str) -> int | None:
        """The id of an abstract already stored with the same content (whitespace and accent encoding
        aside), if any. Rows stored before abstracts were composed (NFC) kept the hash of the text as
        given, so that hash is looked up too."""
        hashes = [content_hash(text), _sha256(normalise_whitespace(text))]
        return self._value("SELECT min(id) FROM abstracts WHERE content_hash IN (?, ?)", hashes)

    def add_abstract(
        self,
        text: str,
        source: str = "pasted",
        arxiv_id: str | None = None,
        reference_title: str | None = None,
        categories: str | None = None,
        date: str | None = None,
    ) -> int:
        """Store an abstract and return its id; adding one that is already there returns its id."""
        normalised = normalise_abstract(text)
        if not normalised:
            raise TitlecraftError("the abstract is empty")
        with self._write():
            existing = self.find_abstract(text)
            if existing is not None:
                return existing
            return self._insert(
                "abstracts",
                {
                    "content_hash": content_hash(normalised),
                    "text": normalised,
                    "source": source,
                    "arxiv_id": arxiv_id,
                    "reference_title": reference_title,
                    "categories": categories,
                    "date": date,
                    "added_at": _now(),
                },
            )

    def fill_in_abstract(self, abstract_id: int, **details: str | None) -> bool:
        """Give a stored abstract the ``details`` it lacks (reference_title, arxiv_id, categories, date),
        keeping those it has; True if any was filled in. An abstract first stored bare (pasted, or imported
        as plain text) otherwise kept none of what a later import knew about it."""
        with self._write():
            stored = self.abstract(abstract_id)
            missing = {
                name: value for name, value in details.items() if value is not None and getattr(stored, name) is None
            }
            if missing:
                self.db.table("abstracts").update(abstract_id, missing)
            return bool(missing)

    def abstract(self, abstract_id: int) -> Abstract:
        rows = self._rows(
            "SELECT id, text, source, arxiv_id, reference_title, categories, date, added_at "
            "FROM abstracts WHERE id = ?",
            [abstract_id],
        )
        if not rows:
            raise TitlecraftError(f"there is no abstract {abstract_id} in {self.path}")
        return Abstract(**rows[0])

    def _require_abstract(self, abstract_id: int) -> None:
        if self._value("SELECT 1 FROM abstracts WHERE id = ?", [abstract_id]) is None:
            raise TitlecraftError(f"there is no abstract {abstract_id} in {self.path}")

    # -- generations and candidates ----------------------------------------------------------------

    def record_generation(
        self,
        abstract_id: int,
        model_spec: str,
        model_id: str,
        params: Mapping[str, Any],
        seed: int | None,
        device: str | None,
        seconds: float | None,
        first_token_seconds: float | None,
        candidates: Sequence[Mapping[str, Any]],
    ) -> tuple[int, list[int]]:
        """Record one sampling call and its candidates (dicts with text, optional score and flags)."""
        with self._write():
            self._require_abstract(abstract_id)
            generation_id = self._insert(
                "generations",
                {
                    "abstract_id": abstract_id,
                    "model_spec": model_spec,
                    "model_id": model_id,
                    "params": json.dumps(dict(params), sort_keys=True, ensure_ascii=False),
                    "seed": seed,
                    "device": device,
                    "seconds": seconds,
                    "first_token_seconds": first_token_seconds,
                    "created_at": _now(),
                },
            )
            return generation_id, self._insert_candidates(generation_id, candidates)

    def append_candidates(self, generation_id: int, candidates: Sequence[Mapping[str, Any]]) -> list[int]:
        """Add candidates to a generation (the TUI's "more"), ranked after the ones it already has."""
        with self._write():
            if self._value("SELECT 1 FROM generations WHERE id = ?", [generation_id]) is None:
                raise TitlecraftError(f"there is no generation {generation_id} in {self.path}")
            return self._insert_candidates(generation_id, candidates)

    def _insert_candidates(self, generation_id: int, candidates: Sequence[Mapping[str, Any]]) -> list[int]:
        last_rank = self._value("SELECT max(rank) FROM candidates WHERE generation_id = ?", [generation_id]) or 0
        return [
            self._insert(
                "candidates",
                {
                    "generation_id": generation_id,
                    "rank": last_rank + offset,
                    "text": candidate["text"],
                    "score": candidate.get("score"),
                    "flags": json.dumps(list(candidate.get("flags", ())), ensure_ascii=False),
                },
            )
            for offset, candidate in enumerate(candidates, start=1)
        ]

    def candidates(self, abstract_id: int) -> list[Candidate]:
        """Every candidate generated for an abstract, oldest generation first, in rank order."""
        rows = self._rows(
            "SELECT c.id, c.generation_id, c.rank, c.text, c.score, c.flags FROM candidates AS c "
            "JOIN generations AS g ON g.id = c.generation_id WHERE g.abstract_id = ? ORDER BY g.id, c.rank",
            [abstract_id],
        )
        return [Candidate(**{**row, "flags": tuple(json.loads(row["flags"]))}) for row in rows]

    def generations(self, abstract_id: int) -> list[Generation]:
        """Every sampling call recorded for an abstract, oldest first."""
        rows = self._rows(
            "SELECT id, model_spec, params, seconds, created_at FROM generations WHERE abstract_id = ? ORDER BY id",
            [abstract_id],
        )
        return [Generation(**{**row, "params": json.loads(row["params"])}) for row in rows]

    # -- decisions ---------------------------------------------------------------------------------

    def accept(self, candidate_id: int) -> int:
        return self._decide_on_candidate(candidate_id, ACCEPT)

    def edit(self, candidate_id: int, text: str) -> int:
        return self._decide_on_candidate(candidate_id, EDIT, text=_require_title(text))

    def reject(self, candidate_id: int, reason: str | None = None) -> int:
        return self._decide_on_candidate(candidate_id, REJECT, reason=reason)

    def own_title(self, abstract_id: int, text: str) -> int:
        """Record a title the researcher wrote themselves."""
        _require_title(text)
        with self._write():
            self._require_abstract(abstract_id)
            return self._insert_decision(abstract_id, OWN_TITLE, text=text)

    def undo(self, abstract_id: int) -> int:
        """Revert the latest live decision of an abstract (by appending an undo that names it)."""
        with self._write():
            self._require_abstract(abstract_id)
            target = self._value(
                "SELECT max(id) FROM live_decisions WHERE abstract_id = ?", [abstract_id]
            )
            if target is None:
                raise TitlecraftError(f"abstract {abstract_id} has no decision to undo")
            return self._insert_decision(abstract_id, UNDO, undoes=target)

    def _decide_on_candidate(self, candidate_id: int, action: str, **fields: Any) -> int:
        with self._write():
            abstract_id = self._value(
                "SELECT g.abstract_id FROM candidates AS c JOIN generations AS g ON g.id = c.generation_id "
                "WHERE c.id = ?",
                [candidate_id],
            )
            if abstract_id is None:
                raise TitlecraftError(f"there is no candidate {candidate_id} in {self.path}")
            return self._insert_decision(abstract_id, action, candidate_id=candidate_id, **fields)

    def _insert_decision(self, abstract_id: int, action: str, **fields: Any) -> int:
        return self._insert(
            "decisions",
            {
                "abstract_id": abstract_id,
                "candidate_id": fields.get("candidate_id"),
                "action": action,
                "text": fields.get("text"),
                "reason": fields.get("reason"),
                "undoes": fields.get("undoes"),
                "decided_at": _now(),
            },
        )

    def history(self, abstract_id: int) -> list[Decision]:
        """The decision log of one abstract, oldest first, each marked with whether it was undone."""
        rows = self._rows(
            "SELECT d.id, d.abstract_id, d.candidate_id, d.action, "
            "CASE WHEN d.action IN ('accept', 'reject') THEN c.text ELSE d.text END AS title, "
            "d.reason, d.undoes, d.decided_at, "
            "EXISTS (SELECT 1 FROM decisions AS u WHERE u.undoes = d.id) AS undone "
            "FROM decisions AS d LEFT JOIN candidates AS c ON c.id = d.candidate_id "
            "WHERE d.abstract_id = ? ORDER BY d.id",
            [abstract_id],
        )
        return [Decision(**{**row, "undone": bool(row["undone"])}) for row in rows]

    # -- derived views -----------------------------------------------------------------------------

    def curated_pairs(
        self, since: str | None = None, model: str | None = None, limit: int | None = None
    ) -> list[CuratedPair]:
        """Each abstract's current title. ``since`` is an ISO date or UTC time; ``model`` a model spec;
        ``limit`` keeps the first that many (a screen shows a page, not a 20,000-row store)."""
        conditions, params = [], []
        if since is not None:
            conditions.append("decided_at >= ?")
            params.append(since)
        if model is not None:
            conditions.append("model_spec = ?")
            params.append(model)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        limit_clause = _limit(limit, params)
        rows = self._rows(f"SELECT * FROM curated_pairs {where} ORDER BY abstract_id{limit_clause}", params)
        return [_curated_pair(row) for row in rows]

    def curated_title(self, abstract_id: int) -> str | None:
        return self._value("SELECT title FROM curated_pairs WHERE abstract_id = ?", [abstract_id])

    def search_curated(self, text: str, limit: int | None = None) -> list[CuratedPair]:
        """Curated pairs whose title or abstract contains ``text`` (as _search_fold compares them), the
        first ``limit`` of them if given."""
        params: list[Any] = [_search_fold(text)] * 2
        limit_clause = _limit(limit, params)
        rows = self._rows(
            f"SELECT * FROM curated_pairs WHERE {_SEARCH_CONDITION} ORDER BY abstract_id{limit_clause}", params
        )
        return [_curated_pair(row) for row in rows]

    def count_curated(self, text: str = "") -> int:
        """How many curated pairs search_curated(``text``) would give without a limit (all when empty):
        a counting pass reads no columns into Python, so a capped list can still say "N of M"."""
        if not text:
            return self._value("SELECT count(*) FROM curated_pairs")
        pattern = _search_fold(text)
        return self._value(f"SELECT count(*) FROM curated_pairs WHERE {_SEARCH_CONDITION}", [pattern, pattern])

    def rejected_candidates(self, abstract_id: int | None = None) -> list[RejectedCandidate]:
        """Candidates whose latest live verdict is a rejection, for one abstract or for all."""
        where, params = ("WHERE abstract_id = ?", [abstract_id]) if abstract_id is not None else ("", [])
        rows = self._rows(f"SELECT * FROM rejected_candidates {where} ORDER BY abstract_id, candidate_id", params)
        return [RejectedCandidate(**row) for row in rows]

    def model_stats(self) -> list[ModelStats]:
        return [ModelStats(**row) for row in self._rows("SELECT * FROM model_stats ORDER BY model_spec")]

    def counts(self) -> dict[str, Any]:
        """Sizes of everything, read in one snapshot (``titlecraft stats`` prints these)."""
        with self.snapshot():
            per_action = {
                row["action"]: row["n"]
                for row in self._rows("SELECT action, count(*) AS n FROM decisions GROUP BY action")
            }
            return {
                "abstracts": self._value("SELECT count(*) FROM abstracts"),
                "generations": self._value("SELECT count(*) FROM generations"),
                "candidates": self._value("SELECT count(*) FROM candidates"),
                "decisions": {action: per_action.get(action, 0) for action in ACTIONS},
                "curated": self._value("SELECT count(*) FROM curated_pairs"),
                "rejected": self._value("SELECT count(*) FROM rejected_candidates"),
                "queued": self._value("SELECT count(*) FROM queue"),
            }

    # -- import queue ------------------------------------------------------------------------------

    def enqueue(self, abstract_id: int) -> bool:
        """Put an abstract at the end of the import queue; False if it was already queued."""
        with self._write():
            self._require_abstract(abstract_id)
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO queue (abstract_id, queued_at) VALUES (?, ?)", [abstract_id, _now()]
            )
            return cursor.rowcount == 1

    def queue(self) -> list[QueueEntry]:
        """Queued abstracts in import order, each with whether it has a curated title yet."""
        rows = self._rows(
            "SELECT row_number() OVER (ORDER BY q.position) AS position, q.abstract_id, "
            "cp.abstract_id IS NOT NULL AS curated "
            "FROM queue AS q LEFT JOIN curated_pairs AS cp ON cp.abstract_id = q.abstract_id "
            "ORDER BY q.position"
        )
        return [QueueEntry(row["position"], row["abstract_id"], bool(row["curated"])) for row in rows]

    def queue_length(self) -> int:
        return self._value("SELECT count(*) FROM queue")

    def queue_position(self, abstract_id: int) -> int | None:
        """1-based place of an abstract in the queue, None if it is not queued."""
        return self._value(
            "SELECT (SELECT count(*) FROM queue AS earlier WHERE earlier.position <= q.position) "
            "FROM queue AS q WHERE q.abstract_id = ?",
            [abstract_id],
        )

    def previous_in_queue(self, before: int | None = None) -> int | None:
        """The queued abstract just before ``before``'s place (titled or not); the last one if not given
        or not queued."""
        return self._value(
            "SELECT q.abstract_id FROM queue AS q "
            "WHERE q.position < coalesce((SELECT position FROM queue WHERE abstract_id = ?), "
            "(SELECT max(position) + 1 FROM queue)) ORDER BY q.position DESC LIMIT 1",
            [before],
        )

    def next_in_queue(self, after: int | None = None) -> int | None:
        """The first queued abstract without a curated title, after ``after``'s place if given."""
        return self._value(
            "SELECT q.abstract_id FROM queue AS q "
            "WHERE q.position > coalesce((SELECT position FROM queue WHERE abstract_id = ?), 0) "
            "AND q.abstract_id NOT IN (SELECT abstract_id FROM curated_pairs) ORDER BY q.position LIMIT 1",
            [after],
        )

    # -- settings ----------------------------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        value = self._value("SELECT value FROM settings WHERE key = ?", [key])
        return default if value is None else json.loads(value)

    def set_setting(self, key: str, value: Any) -> None:
        with self._write():
            self.db.execute(
                "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                [key, json.dumps(value, ensure_ascii=False), _now()],
            )
