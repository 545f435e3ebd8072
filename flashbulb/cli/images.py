"""`flashbulb generate | edit | restore`: one request, run in this process or on a server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from flashbulb.billing.money import micros_to_usd
from flashbulb.cli.root import Context, err, exit_code, main
from flashbulb.errors import ErrorKind, FlashbulbError

EXIT_NO_IMAGE = 4


def _request_options(command):
    """Options every one-shot command shares."""
    options = [
        click.option(
            "-o",
            "--output",
            type=click.Path(dir_okay=False, path_type=Path),
            required=True,
            help="Where to write the image (PNG, or .jpg/.webp); several become NAME-1.png, NAME-2.png...",
        ),
        click.option("--model", default=None, help="Model or alias (see `flashbulb models`)."),
        click.option("--aspect-ratio", default=None, help="1:1, 16:9, 4:5... (the Gemini ratios)."),
        click.option("--seed", type=int, default=None, help="Same seed, same image."),
        click.option("-n", "count", type=click.IntRange(1, 4), default=1, help="How many images."),
        click.option("--preset", default=None, help="Style preset for generative models: headshot, product, street."),
        click.option(
            "--server", envvar="FLASHBULB_SERVER", default=None, help="Run on this flashbulb server instead of locally."
        ),
        click.option("--key", envvar="FLASHBULB_API_KEY", default=None, help="API key for --server."),
        click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON (paths, quality, timings)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _run_one(obj: Context, ask, output: Path, server: str | None, key: str | None, as_json: bool) -> None:
    from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from flashbulb import oneshot

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=err, transient=True) as progress:
            if server:
                if not key:
                    raise FlashbulbError(ErrorKind.API_KEY_MISSING, "--server needs --key (or FLASHBULB_API_KEY)")
                progress.add_task(f"{ask.model} on {server}", total=None)
                answer = oneshot.run_remote(ask, server, key, obj.settings.max_input_pixels)
            else:
                task = progress.add_task(f"loading {ask.model}", total=None)

                def loaded() -> None:
                    progress.update(task, description=f"{ask.model}", total=1.0, completed=0)

                answer = oneshot.run_local(
                    ask, obj.settings, on_progress=lambda f: progress.update(task, completed=f), on_loaded=loaded
                )
    except FlashbulbError as error:
        if as_json:
            print(json.dumps({"ok": False, "error": error.kind.value, "message": error.message}))
        else:
            err.print(f"[red]error:[/red] {error.message}")
        sys.exit(exit_code(error))
    result = answer.result
    paths, signed = oneshot.save(answer, output) if result.images else ([], False)
    outcome = {
        "ok": bool(paths),
        "finish_reason": result.finish_reason.value,
        "outputs": [str(p) for p in paths],
        "sizes": [list(im.size) for im in result.images],
        "text": result.text,
        "charge_micros": answer.charge_micros,
        "timings_ms": result.timings_ms,
        "quality": result.quality,
        "content_credentials": signed,
    }
    if as_json:
        print(json.dumps(outcome, default=str))
    else:
        for path, image in zip(paths, result.images):
            err.print(f"[green]wrote[/green] {path} ({image.width}x{image.height})")
        if paths and not signed and server:
            err.print(
                "note: re-encoded from the server's PNG, so its content credentials are not in the file "
                "(the watermark is: `flashbulb verify` still traces it); write .png to keep them"
            )
        if result.text:
            err.print(result.text)
        if answer.charge_micros is not None:
            err.print(f"charged {micros_to_usd(answer.charge_micros)} USD")
    if not paths:
        if not as_json:
            err.print(f"[red]no image:[/red] {result.finish_reason.value}")
        sys.exit(EXIT_NO_IMAGE)


def _ask(model: str, prompt: str, images: list[Path], aspect_ratio, seed, count, preset):
    from flashbulb.oneshot import Ask

    return Ask(
        model=model,
        prompt=prompt,
        images=images,
        aspect_ratio=aspect_ratio,
        n=count,
        seed=seed,
        system=f"preset: {preset}" if preset else "",
    )


@main.command()
@click.argument("prompt")
@_request_options
@click.pass_obj
def generate(
    obj: Context, prompt: str, output: Path, model: str | None, aspect_ratio, seed, count, preset, server, key, as_json
) -> None:
    """Generate an image from PROMPT (default model: flashbulb-image)."""
    _run_one(obj, _ask(model or "flashbulb-image", prompt, [], aspect_ratio, seed, count, preset), output, server, key, as_json)


@main.command()
@click.argument("photos", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("instruction")
@_request_options
@click.pass_obj
def edit(
    obj: Context,
    photos: tuple[Path, ...],
    instruction: str,
    output: Path,
    model: str | None,
    aspect_ratio,
    seed,
    count,
    preset,
    server,
    key,
    as_json,
) -> None:
    """Edit PHOTOS (one, or several references) as INSTRUCTION says (default model: the hosted alias)."""
    ask = _ask(model or "gemini-2.5-flash-image", instruction, list(photos), aspect_ratio, seed, count, preset)
    _run_one(obj, ask, output, server, key, as_json)


@main.command()
@click.argument("photo", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--scale", type=click.Choice(["1", "2", "3", "4"]), default=None, help="Upscale factor (default: up to 2048 px).")
@_request_options
@click.pass_obj
def restore(
    obj: Context,
    photo: Path,
    scale: str | None,
    output: Path,
    model: str | None,
    aspect_ratio,
    seed,
    count,
    preset,
    server,
    key,
    as_json,
) -> None:
    """Restore an old photo: dust, noise, faded colour, then upscale (flashbulb-photo, offline)."""
    prompt = "restore this old photo" + (f", upscale {scale}x" if scale else "")
    _run_one(
        obj, _ask(model or "flashbulb-photo", prompt, [photo], aspect_ratio, seed, count, preset), output, server, key, as_json
    )
