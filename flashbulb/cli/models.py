"""`flashbulb models | pull`: the catalog, and downloading a generative model's weights."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.markup import escape

from flashbulb.billing.money import micros_to_usd
from flashbulb.cli.root import Context, err, main, print_table


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def models(obj: Context, as_json: bool) -> None:
    """The model catalog with prices."""
    from flashbulb.api.receipt import prices_json
    from flashbulb.billing.prices import PriceBook
    from flashbulb.engine.registry import Registry

    registry = Registry.default(obj.settings)
    book = PriceBook(obj.settings.prices, registry.priced_as())
    entries = registry.entries.values()
    rows: list[dict[str, Any]] = [
        {
            "name": e.name,
            "capabilities": list(e.capabilities),
            "price_usd_per_image": micros_to_usd(book.schedule(e.name).standard),
            "prices": prices_json(book.schedule(e.name)),
            "installed": e.installed(),
            "licence": e.details.get("licence", "Apache-2.0"),
            "commercial_use": e.details.get("commercial_use", True),
        }
        for e in entries
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    lines = []
    for r in rows:
        licence = r["licence"] if r["commercial_use"] else f"{r['licence']} (non-commercial)"
        p = r["prices"]
        sizes = "/".join(micros_to_usd(p["image_micros"][c]) for c in ("small", "standard", "large"))
        quality = " ".join(f"{q}={v}" for q, v in p["quality_percent"].items() if v != 100) or "-"
        lines.append(
            [
                r["name"],
                ", ".join(r["capabilities"]),
                sizes,
                micros_to_usd(p["input_image_micros"]),
                quality,
                "yes" if r["installed"] else "no",
                licence,
            ]
        )
    columns = ["model", "capabilities", "USD / image (small/standard/large)", "input", "quality %", "installed", "licence"]
    print_table(columns, lines, whole=("model",))


@main.command()
@click.argument("name")
@click.option(
    "--model-dir",
    type=click.Path(file_okay=False),
    help="Where weights go (default: <data dir>/models, or [diffusion] model_dir).",
)
@click.option("--token", envvar="HF_TOKEN", help="Hugging Face token, for gated models (default: $HF_TOKEN).")
@click.pass_obj
def pull(obj: Context, name: str, model_dir: str | None, token: str | None) -> None:
    """Download a generative model's weights (with progress), verify them and record them."""
    from pathlib import Path

    from flashbulb.engine.backends.diffusion import catalog, weights

    settings = obj.settings
    target = Path(model_dir).expanduser() if model_dir else settings.model_dir
    assert target is not None  # Settings.__post_init__ defaults model_dir to <data_dir>/models
    models = {**catalog.by_name(), "flashbulb-image": catalog.by_name()[catalog.DEFAULT]}
    if name == "flashbulb-photo":
        err.print("flashbulb-photo is built in: its models come inside the installed packages, nothing to pull.")
        return
    if name not in models:
        err.print(f"[red]error:[/red] {escape(name)} is not a model to pull; pull one of: {', '.join(catalog.by_name())}")
        sys.exit(2)
    model = models[name]
    if missing := weights.stack_missing():
        err.print(
            f"[red]error:[/red] {escape(name)} needs the generative stack ({', '.join(missing)} missing): {weights.INSTALL_STACK}"
        )
        sys.exit(2)
    if not model.commercial_use:
        err.print(f"[yellow]note:[/yellow] {escape(model.title)} is licensed under {model.licence}: not for commercial use.")
    err.print(f"pulling {model.source} ({model.pipeline}, about {model.download_gb:g} GB) into {target / model.name}")
    try:
        where = weights.pull(model, target, token=token)
    except weights.WeightsError as error:
        err.print(f"[red]error:[/red] {error}")
        sys.exit(3)
    err.print(f"[green]installed[/green] {model.name} in {where}")
