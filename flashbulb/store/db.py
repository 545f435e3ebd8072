"""Connecting to the database (SQLite by default, PostgreSQL in production) and migrating it."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DataError, DBAPIError, DisconnectionError, InterfaceError, NoResultFound, OperationalError
from sqlalchemy.sql.expression import ClauseElement

from flashbulb.errors import ErrorKind, FlashbulbError

MIGRATIONS = Path(__file__).parent / "migrations"


def connect(url: str) -> Engine:
    engine = _connect(url)
    event.listen(engine, "before_cursor_execute", _refuse_nul)
    return engine


def _refuse_nul(_conn, _cursor, _statement, parameters, _context, _executemany) -> None:
    _refuse_nul_in(parameters)


def _refuse_nul_in(parameters) -> None:
    """The one check of every string a caller's request can bring to a column: PostgreSQL can't
    store U+0000 in text (measured: a 500 on /v1beta/files/%00, batch names, upload displayName,
    JSONL keys, redeem codes, admin notes); SQLite could, but the same request gets the same answer."""
    rows = parameters if isinstance(parameters, list) else [parameters]
    for row in rows:
        values = row.values() if isinstance(row, dict) else (row or ())
        if any(isinstance(value, str) and "\x00" in value for value in values):
            raise FlashbulbError(ErrorKind.INVALID_ARGUMENT, "text with a NUL character (\\u0000) can't be stored; remove it")


def unavailable(exc: BaseException) -> bool:
    """Whether an error means the database can't be reached right now (restarting, failing over, a
    dropped connection) rather than that the statement was wrong: the caller may retry."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OperationalError, InterfaceError)) and not isinstance(exc, DataError)


def _connect(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            # Autocommit at the driver so that our own BEGIN IMMEDIATE below starts every
            # transaction: writers queue on the file lock instead of deadlocking on upgrade.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # In WAL, NORMAL syncs at checkpoints rather than at every commit: a commit survives the
            # process being killed (the SIGKILL tests), and only an OS crash or power cut can roll
            # back the last ones (never a torn one). Measured: the fsync of each commit was most of
            # a call's server time (bench/server_overhead.py). PostgreSQL is the store for more.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection):
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    engine = create_engine(url, pool_size=10, max_overflow=20)
    _ping_when_idle(engine)
    return engine


PING_IDLE_S = 1.0  # a pooled connection idle longer than this is checked before it is used


def _ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's pool_pre_ping, for connections idle over PING_IDLE_S only. Pinging every
    checkout was a round trip in each transaction: 8% of the ledger's time on PostgreSQL under
    load (bench/ledger_throughput.py, py-spy), where connections go back to the pool in between
    transactions many times a second. One that died since its last use (a database restart)
    raises DisconnectionError here, and the pool connects again (SQLAlchemy's disconnect
    handling); one that dies within the second fails its statement, is invalidated, and the
    caller gets the unavailable answer (503, nothing charged), as a connection lost mid-call does."""

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _note_use(_dbapi_connection, record) -> None:
        record.info["used"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection, record, _proxy) -> None:
        if time.monotonic() - record.info.get("used", 0.0) <= PING_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)  # as pool_pre_ping does (outside any transaction)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(str(exc)) from exc


class Prepared:
    """A statement of the ledger's hot path, compiled once per dialect with its bind types resolved,
    and run on the driver's own cursor. `Connection.execute` spends ~22 us of Python on each
    statement (finding its compiled form, processing parameters, building a result), the driver
    ~1-2 us (SQLite, measured); a charge is 11 statements. Errors are SQLAlchemy's as with execute
    (IntegrityError, a lost connection invalidated). Rows are named tuples of what the driver
    returns: a RETURNING here must not need result processing (no dates on SQLite)."""

    def __init__(self, statement: ClauseElement):
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}  # by dialect name

    def __call__(self, conn: Connection, params: dict[str, Any]) -> Ran:
        compiled = self._compiled.get(conn.dialect.name)
        if compiled is None:
            compiled = self._compiled[conn.dialect.name] = _compile(self.statement, conn)
        params = {**compiled.constants, **params}
        for name, process in compiled.processors.items():
            params[name] = process(params[name])
        values = params if compiled.order is None else tuple(params[name] for name in compiled.order)
        _refuse_nul_in(values)  # what the before_cursor_execute event does for execute
        cursor = conn.connection.cursor()
        try:
            with _driver_errors(conn, compiled.sql, values):
                cursor.execute(compiled.sql, values)
        except BaseException:
            cursor.close()  # now, in this thread (see Ran)
            raise
        return Ran(conn, cursor, compiled.sql)


@contextlib.contextmanager
def pipelined(conn: Connection) -> Iterator[None]:
    """Send the Prepared statements run inside without waiting for each one's answer; read their
    results (rowcount, first, one) after the block. PostgreSQL's pipeline mode: one round trip for
    them all (a round trip was ~0.15 ms of a charge's ~15, measured with psycopg on loopback); a
    failed statement skips the rest and raises at the end of the block. SQLite has no round trips."""
    if conn.dialect.name != "postgresql":
        yield
        return
    with _driver_errors(conn, "(a pipeline)", None), conn.connection.dbapi_connection.pipeline():  # type: ignore[union-attr]
        yield


class Ran:
    """A Prepared statement's result: `rowcount`, `first()`, `one()`. Read once, then its cursor is
    closed: a SQLite cursor left open is finalised whenever the garbage collector gets to it, in any
    thread and holding the GIL, and that waits for its connection, which another thread may be
    using to wait 30 s for the write lock (measured: the ledger's threads deadlocked until then)."""

    def __init__(self, conn: Connection, cursor, sql: str):
        self.conn, self.cursor, self.sql = conn, cursor, sql
        self._rowcount = -1
        self._row: Any = None
        if conn.dialect.name == "sqlite":  # no pipelines there: read it now
            self._read()

    def _read(self) -> None:
        if self.cursor is None:
            return
        cursor, self.cursor = self.cursor, None
        with _driver_errors(self.conn, self.sql, None):
            self._rowcount = cursor.rowcount
            if cursor.description is not None:
                row = cursor.fetchone()
                if row is not None:
                    self._row = _row_type(tuple(column[0] for column in cursor.description))._make(row)
            cursor.close()

    @property
    def rowcount(self) -> int:
        self._read()
        return self._rowcount

    def first(self) -> Any:
        self._read()
        return self._row

    def one(self) -> Any:
        row = self.first()
        if row is None:
            raise NoResultFound("no row where one was required")
        return row


@contextlib.contextmanager
def _driver_errors(conn: Connection, sql: str, values: Any) -> Iterator[None]:
    """The driver's errors as SQLAlchemy's (what execute raises), the connection invalidated if lost."""
    dbapi = conn.dialect.loaded_dbapi
    try:
        yield
    except dbapi.Error as exc:
        lost = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, None)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(sql, values, exc, dbapi.Error, connection_invalidated=lost) from exc


@functools.cache
def _row_type(names: tuple[str, ...]) -> Any:
    return collections.namedtuple("Row", names)


def _compile(statement: ClauseElement, conn: Connection) -> _Compiled:
    compiled: Any = statement.compile(dialect=conn.dialect)
    processors = {}
    for name, bind in compiled.binds.items():
        process = bind.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        if process is not None:
            processors[name] = process
    constants = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}
    return _Compiled(str(compiled), compiled.positiontup, processors, constants)


@dataclasses.dataclass(frozen=True)
class _Compiled:
    sql: str
    order: list[str] | None  # the parameters' names in order, for a positional driver (SQLite's "?")
    processors: dict[str, Callable[[Any], Any]]  # bind processors (a date as SQLite stores it, JSON)
    constants: dict[str, Any]  # the values the statement itself gives (state == "held")


T = TypeVar("T")
MAX_GROUP = 64  # the most writes one grouped transaction takes (its row locks are held until it commits)


class GroupCommit:
    """Runs small write transactions that arrive together as one transaction (group commit).

    Every charge is two short transactions on its account's row (hold, then settle), and each
    holds that row's lock until its commit is durable: on PostgreSQL the account's calls queued
    one fsync at a time, and on SQLite each writer waited on the file lock in the busy handler's
    sleeps. Here the first caller to arrive runs its own write at once (no added latency when
    alone); those arriving meanwhile run together in the next transaction, one commit for all.

    Each write behaves as if it ran alone: they run in arrival order, each sees the ones before
    it, and when one raises (out of credits, a duplicate request id, a deadlock) the group is
    rolled back and each is run again in its own transaction, so it gets its own answer."""

    def __init__(self, db: Engine):
        self.db = db
        self._cond = threading.Condition()
        self._waiting: list[_Write] = []
        self._leading = False

    def run(self, work: Callable[[Connection], T], *, alone: bool = False) -> T:
        """`work(conn)`'s value, once it has committed. Grouped work may run twice (its group rolled
        back): it must change nothing but the database, and never call `transact` itself (it would
        wait for its own group). `alone`: in a transaction of its own, once."""
        write = _Write(work, alone)
        with self._cond:
            self._waiting.append(write)
            while not write.done:
                if self._leading:
                    self._cond.wait()
                    continue
                self._leading = True
                group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
                self._cond.release()
                try:
                    self._commit(group)
                finally:
                    self._cond.acquire()
                    self._leading = False
                    self._cond.notify_all()
        # The error's traceback holds _commit's frame, which holds `write`: let go of it here, or
        # the cycle waits for the GC with what the failed write's frames hold (see Ran).
        error, value = write.error, write.value
        write.error = write.value = None
        if error is not None:
            try:
                raise error
            finally:
                del error
        return value

    def _commit(self, writes: list[_Write]) -> None:
        group = [write for write in writes if not write.alone]
        if len(group) > 1:
            try:
                with self.db.begin() as conn:
                    values = [write.work(conn) for write in group]
            except BaseException:  # noqa: BLE001 - each is run again alone below and gets its own answer
                pass
            else:
                for write, value in zip(group, values):
                    write.value, write.done = value, True
        for write in writes:
            if write.done:
                continue
            try:
                with self.db.begin() as conn:
                    write.value = write.work(conn)
            except BaseException as exc:  # noqa: BLE001 - raised in its own caller's thread
                write.error = exc
            write.done = True


@dataclasses.dataclass
class _Write:
    work: Callable[[Connection], Any]
    alone: bool
    value: Any = None
    error: BaseException | None = None
    done: bool = False


_groups: weakref.WeakKeyDictionary[Engine, GroupCommit] = weakref.WeakKeyDictionary()
_groups_lock = threading.Lock()


def group_commit(db: Engine) -> GroupCommit:
    """The one GroupCommit of `db` in this process."""
    group = _groups.get(db)
    if group is None:
        with _groups_lock:
            group = _groups.setdefault(db, GroupCommit(db))
    return group


def transact(db: Engine, work: Callable[[Connection], T], *, alone: bool = False) -> T:
    """Run `work(conn)` in a transaction, grouped with the others arriving at the same time on `db`
    (see GroupCommit.run)."""
    return group_commit(db).run(work, alone=alone)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (run on every start; a no-op when current)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
