"""The `flashbulb` command group, its shared context (settings, database) and `serve`."""

from __future__ import annotations

import logging
import sys

import click
from rich.console import Console

from flashbulb.config import Settings
from flashbulb.errors import FlashbulbError

err = Console(stderr=True, soft_wrap=True)


class Context:
    def __init__(self, data_dir: str | None, database_url: str | None):
        self.settings = Settings.load(data_dir, database_url)
        self._db = None

    @property
    def db(self):  # noqa: ANN201
        if self._db is None:
            from flashbulb.store import db as store

            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            self._db = store.connect(self.settings.database_url)
            store.migrate(self._db)
        return self._db


@click.group()
@click.option("--data-dir", envvar="FLASHBULB_DATA_DIR", type=click.Path(file_okay=False), help="Where the database and config live.")
@click.option("--database-url", envvar="FLASHBULB_DATABASE_URL", help="SQLAlchemy URL; default: SQLite in the data dir.")
@click.pass_context
def main(ctx: click.Context, data_dir: str | None, database_url: str | None) -> None:
    """flashbulb: self-hosted image generation and editing, metered."""
    ctx.obj = Context(data_dir, database_url)


def fail(error: FlashbulbError) -> None:
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
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info", timeout_graceful_shutdown=5,
                http=TimedH11Protocol, limit_concurrency=settings.max_connections)
