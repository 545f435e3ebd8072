"""Connecting to the database (SQLite by default, PostgreSQL in production) and migrating it."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, NoResultFound, OperationalError
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
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


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
        with _driver_errors(conn, compiled.sql, values):
            cursor.execute(compiled.sql, values)
        return Ran(conn, cursor, compiled.sql)


class Ran:
    """A Prepared statement's result: `rowcount`, `first()`, `one()`."""

    def __init__(self, conn: Connection, cursor, sql: str):
        self.conn, self.cursor, self.sql = conn, cursor, sql

    @property
    def rowcount(self) -> int:
        return self.cursor.rowcount

    def first(self) -> Any:
        with _driver_errors(self.conn, self.sql, None):
            row = self.cursor.fetchone()
        if row is None:
            return None
        return _row_type(tuple(column[0] for column in self.cursor.description))._make(row)

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


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (run on every start; a no-op when current)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
