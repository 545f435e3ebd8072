"""`flashbulb serve | keys | credits | codes | usage | models | pull | generate | edit | restore | batch | verify`.

Every command works on the same data directory (`batch`, and the one-shot commands with --server,
talk to a running server). One module per group of commands; importing them registers them."""

from flashbulb.cli import accounts, batch, config, images, models, usage, verify  # noqa: F401 - registers the commands
from flashbulb.cli.root import main

__all__ = ["main"]
