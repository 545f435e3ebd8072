"""Connecting to the database (SQLite by default, PostgreSQL in production) and migrating it."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError

from flashbulb.errors import ErrorKind, FlashbulbError

MIGRATIONS = Path(__file__).parent / "migrations"


def connect(url: str) -> Engine:
    engine = _connect(url)
    event.listen(engine, "before_cursor_execute", _refuse_nul)
    return engine


def _refuse_nul(_conn, _cursor, _statement, parameters, _context, _executemany) -> None:
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


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (run on every start; a no-op when current)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
