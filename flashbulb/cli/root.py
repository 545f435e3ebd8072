"""The `flashbulb` command group, its shared context (settings, database) and `serve`."""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import click
from rich.console import Console
from rich.markup import escape

from flashbulb.config import Settings
from flashbulb.errors import FlashbulbError

err = Console(stderr=True, soft_wrap=True)


def print_table(columns: list[str], rows: list[list[str]], *, whole: tuple[str, ...] = (), title: str | None = None) -> None:
    """A table for the terminal. Cells are plain text (a model named "FLUX.2 [klein] 4B" is not Rich
    markup), and no id a user copies is cut (at 80 columns every id was cut to "fb…", measured): the
    `whole` columns never wrap, and a table too wide for the terminal prints as one block per row."""
    from rich.table import Table
    from rich.text import Text

    console = Console()
    wanted = sum(max([len(c), *(min(len(r[i]), 24) for r in rows)]) + 3 for i, c in enumerate(columns)) + 1
    if rows and wanted > console.width:
        # Too narrow for a readable table: one block per row, every value whole.
        if title:
            console.print(Text(title, style="bold"))
        label = max(len(c) for c in columns)
        for row in rows:
            for column, cell in zip(columns, row):
                if cell:
                    console.print(Text(f"{column:>{label}}  ", style="dim") + Text(cell), soft_wrap=True)
            console.print()
        return
    table = Table(title=title)
    for index, column in enumerate(columns):
        keep = column in whole
        width = max([len(column), *(len(row[index]) for row in rows)]) if keep else None
        table.add_column(column, no_wrap=keep, min_width=width, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)


class Context:
    def __init__(self, data_dir: str | None, database_url: str | None):
        self.settings = Settings.load(data_dir, database_url)
        self._db = None

    @property
    def db(self):
        if self._db is None:
            from flashbulb.store import db as store

            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            self._db = store.connect(self.settings.database_url)
            store.migrate(self._db)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()


@click.group()
@click.option(
    "--data-dir", envvar="FLASHBULB_DATA_DIR", type=click.Path(file_okay=False), help="Where the database and config live."
)
@click.option("--database-url", envvar="FLASHBULB_DATABASE_URL", help="SQLAlchemy URL; default: SQLite in the data dir.")
@click.pass_context
def main(ctx: click.Context, data_dir: str | None, database_url: str | None) -> None:
    """flashbulb: self-hosted image generation and editing, metered."""
    try:
        ctx.obj = Context(data_dir, database_url)
        ctx.call_on_close(ctx.obj.close)  # a command run in a longer-lived process leaves no connections
    except ValueError as error:  # a malformed flashbulb.toml: say what and where, no traceback
        err.print(f"[red]error:[/red] {escape(str(error))}")
        sys.exit(2)


# What a script can branch on: 2 fix the input, 3 retry later, 5 the key or the credits
# (4 is each command's own: no image made, a batch that failed).
EXIT_CODES = {"input": 2, "retry": 3, "account": 5}


def exit_code(error: FlashbulbError) -> int:
    return EXIT_CODES[error.kind.fixed_by]


def fail(error: FlashbulbError) -> NoReturn:
    err.print(f"[red]error:[/red] {error.message}")
    sys.exit(2)


@main.command()
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default 8080).")
@click.pass_obj
def serve(obj: Context, host: str | None, port: int | None) -> None:
    """Run the HTTP server (Gemini API, admin API)."""
    import uvicorn

    from flashbulb.api.app import create_app
    from flashbulb.api.limits import TimedH11Protocol
    from flashbulb.gateway import accounts

    settings = obj.settings
    settings.host = host or settings.host
    settings.port = port or settings.port
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not accounts.has_admin(obj.db):
        new = accounts.create_key(obj.db, "admin", key_name="admin", admin=True)
        err.print("[bold]First start: created the admin account. Its API key (shown only this once):[/bold]")
        print(f"FLASHBULB_ADMIN_KEY={new.key}", flush=True)
    err.print(f"data dir: {settings.data_dir}  database: {settings.database_url.split('@')[-1]}")
    err.print(f"serving on http://{settings.host}:{settings.port}")
    TimedH11Protocol.head_timeout_s = settings.head_timeout_s
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=5,
        http=TimedH11Protocol,
        limit_concurrency=settings.max_connections,
    )
