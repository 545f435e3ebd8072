"""`flashbulb config check`: read flashbulb.toml the way `serve` will, and print the settings in effect."""

from __future__ import annotations

import dataclasses
import json
import re

import click
from rich.markup import escape

from flashbulb.cli.root import Context, err, main


@main.group()
def config() -> None:
    """The server's configuration (flashbulb.toml in the data dir)."""


@config.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@click.pass_obj
def check(obj: Context, as_json: bool) -> None:
    """Check flashbulb.toml (every section, the models and their prices) and print the effective
    settings: defaults, then the environment, then the file. A bad file exits 2 naming the key."""
    from flashbulb.billing.prices import PriceBook
    from flashbulb.engine.registry import Registry

    settings = obj.settings
    try:
        registry = Registry.default(settings)
        book = PriceBook(settings.prices, registry.priced_as())
    except ValueError as error:  # a local model's `like`, [prices] naming no model...
        err.print(f"[red]error:[/red] {escape(str(error))}")
        raise SystemExit(2) from None
    effective = dataclasses.asdict(settings)
    effective["database_url"] = _hide_password(settings.database_url)
    effective["rate_limits"]["redis_url"] = _hide_password(settings.rate_limits.redis_url)
    effective["prices"] = {name: dataclasses.asdict(book.schedule(name)) for name in registry.entries}
    source = settings.data_dir / "flashbulb.toml"
    if as_json:
        print(json.dumps({"file": str(source) if source.exists() else None, "settings": effective}, indent=2, default=str))
        return
    err.print(f"{source} is valid" if source.exists() else f"no {source}: the embedded defaults")
    for name, value in effective.items():
        print(f"{name} = {json.dumps(value, default=str)}")  # (default: paths as text)


def _hide_password(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db (secrets are never printed)."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)
