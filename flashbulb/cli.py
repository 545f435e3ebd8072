"""`flashbulb serve | keys | credits | usage | models | pull | generate | edit | restore | batch`: every command works on the same data directory
(`batch` talks to a running server)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from flashbulb.config import Settings, micros_to_usd, usd_to_micros
from flashbulb.errors import ErrorKind, FlashbulbError

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


def _fail(error: FlashbulbError) -> None:
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
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info", timeout_graceful_shutdown=5)


@main.group()
def keys() -> None:
    """Create and list API keys."""


@keys.command("create")
@click.option("--name", required=True, help="Account name (created if new).")
@click.option("--credits", "credits_usd", default="0", help="Credits to grant, in USD.")
@click.option("--key-name", default="default")
@click.option("--admin", is_flag=True, help="Make the account an admin account.")
@click.option("--models", "models_csv", default=None, help="Scope: the only models the key may call, comma-separated.")
@click.option("--expires", default=None, help="The key stops working after this long: 30d, 12h, 45m.")
@click.option("--cap", "cap_usd", default=None, help="The most this key may spend, in USD (settled + held).")
@click.option("--referred-by", default=None, help="A referral code: its account earns [referrals] percent of this one's spend.")
@click.pass_obj
def keys_create(
    obj: Context, name: str, credits_usd: str, key_name: str, admin: bool, models_csv: str | None, expires: str | None,
    cap_usd: str | None, referred_by: str | None,
) -> None:
    """Create a key; prints only the key on stdout (shown once, stored hashed)."""
    from flashbulb.gateway import accounts

    try:
        new = accounts.create_key(
            obj.db, name, key_name=key_name, credits_micros=_usd(credits_usd), admin=admin,
            models=models_csv.split(",") if models_csv is not None else None,
            expires_in=accounts.parse_duration(expires) if expires else None,
            cap_micros=_usd(cap_usd) if cap_usd is not None else None, referred_by=referred_by,
            referral_percent=obj.settings.referral_percent, referral_days=obj.settings.referral_days,
        )
    except FlashbulbError as error:
        _fail(error)
    print(new.key)


def _usd(text: str) -> int:
    try:
        return usd_to_micros(text)
    except ValueError as exc:
        _fail(FlashbulbError(ErrorKind.INVALID_ARGUMENT, str(exc)))


@keys.command("revoke")
@click.argument("key_id", type=int)
@click.pass_obj
def keys_revoke(obj: Context, key_id: int) -> None:
    """Revoke the key KEY_ID (see `flashbulb keys list`): it is refused from now on."""
    from flashbulb.gateway import accounts

    try:
        changed = accounts.revoke_key(obj.db, key_id)
    except FlashbulbError as error:
        _fail(error)
    print(f"key {key_id}: {'revoked' if changed else 'was already revoked'}")


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def keys_list(obj: Context, as_json: bool) -> None:
    from flashbulb.gateway import accounts

    rows = accounts.list_keys(obj.db)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(
        "account", "admin", "balance USD", "held USD", "key id", "key name", "key prefix", "created", "revoked",
        "expires", "models", "spent / cap USD", "referral code",
    )
    for r in rows:
        cap = f"{micros_to_usd(r['spent_micros'])} / {micros_to_usd(r['cap_micros'])}" if r["cap_micros"] is not None else micros_to_usd(r["spent_micros"])
        table.add_row(
            r["account"], "yes" if r["admin"] else "", micros_to_usd(r["balance_micros"]), micros_to_usd(r["held_micros"]),
            str(r["key_id"]), r["key_name"], r["key_prefix"] + "…", r["created_at"], "yes" if r["revoked"] else "",
            r["expires_at"] or "", ",".join(r["models"]) if r["models"] is not None else "all", cap, r["referral_code"] or "",
        )
    Console().print(table)


@main.group()
def credits() -> None:
    """Grant credits."""


@credits.command("add")
@click.argument("account")
@click.argument("usd")
@click.pass_obj
def credits_add(obj: Context, account: str, usd: str) -> None:
    """Add USD credits to ACCOUNT (negative to remove)."""
    from flashbulb.gateway import ledger

    try:
        balance = ledger.grant(obj.db, account, usd_to_micros(usd), note="flashbulb credits add")
    except FlashbulbError as error:
        _fail(error)
    print(f"{account}: balance {micros_to_usd(balance)} USD")


@credits.command("refund")
@click.argument("request_id")
@click.argument("usd", required=False)
@click.option("--note", default="", help="Why (kept in the ledger).")
@click.pass_obj
def credits_refund(obj: Context, request_id: str, usd: str | None, note: str) -> None:
    """Refund the charge of REQUEST_ID, all of it or USD of it (once; never more than was charged)."""
    from flashbulb.gateway import ledger

    try:
        done = ledger.refund(obj.db, request_id, _usd(usd) if usd is not None else None, note or "flashbulb credits refund")
    except FlashbulbError as error:
        _fail(error)
    clawed = f", {micros_to_usd(done['clawedBackMicros'])} USD commission clawed back" if done["clawedBackMicros"] else ""
    print(f"{request_id}: refunded {micros_to_usd(done['refundedMicros'])} of {micros_to_usd(done['chargedMicros'])} USD{clawed}")


@main.group()
def codes() -> None:
    """Redemption codes: single-use credits a customer redeems (POST /flashbulb/account/redeem)."""


@codes.command("create")
@click.argument("usd")
@click.option("--expires", default=None, help="The code stops working after this long: 30d, 12h.")
@click.option("--count", default=1, show_default=True, help="How many codes (one a line).")
@click.option("--note", default="")
@click.pass_obj
def codes_create(obj: Context, usd: str, expires: str | None, count: int, note: str) -> None:
    """Create COUNT codes worth USD each; prints them (shown once, stored hashed)."""
    from flashbulb.gateway import accounts, ledger
    from flashbulb.store.tables import utcnow

    try:
        until = utcnow() + accounts.parse_duration(expires) if expires else None
        for _ in range(count):
            print(ledger.create_code(obj.db, _usd(usd), expires_at=until, note=note))
    except FlashbulbError as error:
        _fail(error)


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", default=50, show_default=True)
@click.pass_context
def usage(ctx: click.Context, as_json: bool, limit: int) -> None:
    """Recent calls and totals per account and model (`usage export`, `usage rollup`: see their --help)."""
    from flashbulb.gateway import usage as usage_report

    if ctx.invoked_subcommand is not None:
        return
    obj: Context = ctx.obj

    records = usage_report.recent(obj.db, limit=limit)
    totals = usage_report.totals(obj.db)
    if as_json:
        print(json.dumps({"records": records, "totals": totals}, indent=2))
        return
    table = Table("when", "account", "model", "status", "in", "out", "ms", "charge USD", title="recent calls")
    for r in records:
        table.add_row(
            r["created_at"], r["account"], r["model"], r["status"], str(r["input_images"]), str(r["output_images"]),
            str(r["latency_ms"]), micros_to_usd(r["charge_micros"]),
        )
    summary = Table("account", "model", "calls", "images", "charge USD", title="totals")
    for t in totals:
        summary.add_row(t["account"], t["model"], str(t["calls"]), str(t["images"]), micros_to_usd(t["charge_micros"]))
    console = Console()
    console.print(table)
    console.print(summary)


@usage.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--from", "start", help="First UTC day, YYYY-MM-DD (default: the oldest).")
@click.option("--to", "end", help="Last UTC day, YYYY-MM-DD, included (default: today).")
@click.option("--account", help="Only this account.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default="-", help="File to write (default stdout).")
@click.pass_obj
def usage_export(obj: Context, fmt: str, start: str | None, end: str | None, account: str | None, output: str) -> None:
    """Every usage row in a date range as CSV or JSON: rolled-up days as daily totals (kind "day"),
    then each call still kept (kind "call"); summing `calls` and `charge_micros` gives the totals."""
    from flashbulb.gateway import usage as usage_report

    try:
        first, last = usage_report.parse_day(start, "from"), usage_report.parse_day(end, "to")
        account_id = usage_report.account_id_of(obj.db, account) if account else None
    except FlashbulbError as error:
        _fail(error)
    rows = usage_report.export_rows(obj.db, start=first, end=last, account_id=account_id)
    meta = {"from": first and first.isoformat(), "to": last and last.isoformat(), "account": account}
    if output == "-":
        usage_report.write_export(rows, sys.stdout, fmt, meta)
        return
    with open(output, "w", encoding="utf-8", newline="") as out:
        count = usage_report.write_export(rows, out, fmt, meta)
    err.print(f"wrote {count} rows to {output}")


@usage.command("rollup")
@click.option("--older-than", required=True, help="Roll up days older than this: 90d (or a number of days).")
@click.option("--batch-days", default=7, show_default=True, help="Days moved per transaction.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def usage_rollup(obj: Context, older_than: str, batch_days: int, as_json: bool) -> None:
    """Move per-call usage records older than a cutoff into daily totals and delete them
    (summaries, exports and /metrics still count them). Running it again changes nothing."""
    from flashbulb.gateway import usage as usage_report

    days = older_than.strip().lower().removesuffix("d")
    if not days.isdigit() or batch_days < 1:
        _fail(FlashbulbError(ErrorKind.INVALID_ARGUMENT, "--older-than takes a number of days, like 90d"))
    try:
        moved = usage_report.rollup(obj.db, older_than_days=int(days), batch_days=batch_days)
    except FlashbulbError as error:
        _fail(error)
    if as_json:
        print(json.dumps(moved))
    else:
        print(f"rolled up {moved['records']} usage records from {moved['days']} days before {moved['before']} into {moved['daily_rows']} daily rows")


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def models(obj: Context, as_json: bool) -> None:
    """The model catalog with prices."""
    from flashbulb.engine.registry import Registry

    entries = Registry.default(obj.settings).entries.values()
    rows = [
        {
            "name": e.name,
            "capabilities": list(e.capabilities),
            "price_usd_per_image": micros_to_usd(e.price_micros_per_image),
            "prices": e.prices.describe(),
            "installed": e.installed(),
            "licence": e.details.get("licence", "Apache-2.0"),
            "commercial_use": e.details.get("commercialUse", True),
        }
        for e in entries
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("model", "capabilities", "USD / image (small/standard/large)", "input", "quality %", "installed", "licence")
    for r in rows:
        licence = r["licence"] if r["commercial_use"] else f"{r['licence']} (non-commercial)"
        p = r["prices"]
        sizes = "/".join(micros_to_usd(p["imageMicros"][c]) for c in ("small", "standard", "large"))
        quality = " ".join(f"{q}={v}" for q, v in p["qualityPercent"].items() if v != 100) or "-"
        table.add_row(
            r["name"], ", ".join(r["capabilities"]), sizes, micros_to_usd(p["inputImageMicros"]), quality,
            "yes" if r["installed"] else "no", licence,
        )
    Console().print(table)


@main.command()
@click.argument("name")
@click.option("--model-dir", type=click.Path(file_okay=False), help="Where weights go (default: <data dir>/models, or [diffusion] model_dir).")
@click.option("--token", envvar="HF_TOKEN", help="Hugging Face token, for gated models (default: $HF_TOKEN).")
@click.pass_obj
def pull(obj: Context, name: str, model_dir: str | None, token: str | None) -> None:
    """Download a generative model's weights (with progress), verify them and record them."""
    from pathlib import Path

    from flashbulb.engine.backends.diffusion import catalog, weights

    settings = obj.settings
    target = Path(model_dir).expanduser() if model_dir else settings.model_dir
    models = {**catalog.by_name(), "flashbulb-image": catalog.by_name()[catalog.DEFAULT]}
    if name not in models:
        err.print(f"[red]error:[/red] {name} is not in the catalog; pull one of: {', '.join(catalog.by_name())}")
        sys.exit(2)
    model = models[name]
    if not model.commercial_use:
        err.print(f"[yellow]note:[/yellow] {model.title} is licensed under {model.licence}: not for commercial use.")
    err.print(f"pulling {model.source} ({model.pipeline}, about {model.download_gb:g} GB) into {target / model.name}")
    try:
        where = weights.pull(model, target, token=token)
    except weights.WeightsError as error:
        err.print(f"[red]error:[/red] {error}")
        sys.exit(3)
    err.print(f"[green]installed[/green] {model.name} in {where}")


# ---- generate | edit | restore: one request, locally or against a server ----

EXIT_CODES = {  # what a script can branch on
    ErrorKind.INVALID_ARGUMENT: 2, ErrorKind.NOT_FOUND: 2, ErrorKind.FAILED_PRECONDITION: 2, ErrorKind.TOO_LARGE: 2,
    ErrorKind.OVERLOADED: 3, ErrorKind.INTERNAL: 3, ErrorKind.DEADLINE_EXCEEDED: 3, ErrorKind.CANCELLED: 3,
    ErrorKind.API_KEY_MISSING: 5, ErrorKind.API_KEY_INVALID: 5, ErrorKind.PERMISSION_DENIED: 5,
    ErrorKind.OUT_OF_CREDITS: 5, ErrorKind.RATE_LIMITED: 5,
}
EXIT_NO_IMAGE = 4


def _request_options(command):  # noqa: ANN001, ANN202
    """Options every one-shot command shares."""
    options = [
        click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
                     help="Where to write the image (PNG, or .jpg/.webp); several become NAME-1.png, NAME-2.png..."),
        click.option("--model", default=None, help="Model or alias (see `flashbulb models`)."),
        click.option("--aspect-ratio", default=None, help="1:1, 16:9, 4:5... (the Gemini ratios)."),
        click.option("--seed", type=int, default=None, help="Same seed, same image."),
        click.option("-n", "count", type=click.IntRange(1, 4), default=1, help="How many images."),
        click.option("--preset", default=None, help="Style preset for generative models: headshot, product, street."),
        click.option("--server", envvar="FLASHBULB_SERVER", default=None, help="Run on this flashbulb server instead of locally."),
        click.option("--key", envvar="FLASHBULB_API_KEY", default=None, help="API key for --server."),
        click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON (paths, quality, timings)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _run_one(obj: Context, ask, output: Path, server: str | None, key: str | None, as_json: bool) -> None:  # noqa: ANN001
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
        sys.exit(EXIT_CODES.get(error.kind, 1))
    result = answer.result
    paths = oneshot.save(result.images, output) if result.images else []
    outcome = {
        "ok": bool(paths),
        "finish_reason": result.finish_reason.value,
        "outputs": [str(p) for p in paths],
        "sizes": [list(im.size) for im in result.images],
        "text": result.text,
        "charge_micros": answer.charge_micros,
        "timings_ms": result.timings_ms,
        "quality": result.quality,
    }
    if as_json:
        print(json.dumps(outcome, default=str))
    else:
        for path, image in zip(paths, result.images):
            err.print(f"[green]wrote[/green] {path} ({image.width}x{image.height})")
        if result.text:
            err.print(result.text)
        if answer.charge_micros is not None:
            err.print(f"charged {micros_to_usd(answer.charge_micros)} USD")
    if not paths:
        if not as_json:
            err.print(f"[red]no image:[/red] {result.finish_reason.value}")
        sys.exit(EXIT_NO_IMAGE)


def _ask(model: str, prompt: str, images: list[Path], aspect_ratio, seed, count, preset):  # noqa: ANN001, ANN202
    from flashbulb.oneshot import Ask

    return Ask(model=model, prompt=prompt, images=images, aspect_ratio=aspect_ratio, n=count, seed=seed,
               system=f"preset: {preset}" if preset else "")


@main.command()
@click.argument("prompt")
@_request_options
@click.pass_obj
def generate(obj: Context, prompt: str, output: Path, model: str | None, aspect_ratio, seed, count, preset, server, key, as_json) -> None:  # noqa: ANN001
    """Generate an image from PROMPT (default model: flashbulb-image)."""
    _run_one(obj, _ask(model or "flashbulb-image", prompt, [], aspect_ratio, seed, count, preset), output, server, key, as_json)


@main.command()
@click.argument("photos", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("instruction")
@_request_options
@click.pass_obj
def edit(obj: Context, photos: tuple[Path, ...], instruction: str, output: Path, model: str | None, aspect_ratio, seed, count, preset, server, key, as_json) -> None:  # noqa: ANN001
    """Edit PHOTOS (one, or several references) as INSTRUCTION says (default model: the hosted alias)."""
    ask = _ask(model or "gemini-2.5-flash-image", instruction, list(photos), aspect_ratio, seed, count, preset)
    _run_one(obj, ask, output, server, key, as_json)


@main.command()
@click.argument("photo", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--scale", type=click.Choice(["1", "2", "3", "4"]), default=None, help="Upscale factor (default: up to 2048 px).")
@_request_options
@click.pass_obj
def restore(obj: Context, photo: Path, scale: str | None, output: Path, model: str | None, aspect_ratio, seed, count, preset, server, key, as_json) -> None:  # noqa: ANN001
    """Restore an old photo: dust, noise, faded colour, then upscale (flashbulb-photo, offline)."""
    prompt = "restore this old photo" + (f", upscale {scale}x" if scale else "")
    _run_one(obj, _ask(model or "flashbulb-photo", prompt, [photo], aspect_ratio, seed, count, preset), output, server, key, as_json)


# ==== batch: submit, watch and fetch batch jobs on a flashbulb server (over its HTTP API) ====
# The server runs batches (durably, at the batch discount); these commands only talk to it.

BATCH_OK, BATCH_BAD_INPUT, BATCH_SERVER_ERROR, BATCH_FAILED = 0, 2, 3, 4
BATCH_NOT_OK = {"BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"}  # exit 4


def _batch_options(command):  # noqa: ANN001, ANN202
    options = [
        click.option("--server", envvar="FLASHBULB_SERVER", default="http://127.0.0.1:8080", show_default=True,
                     help="The flashbulb server (FLASHBULB_SERVER)."),
        click.option("--key", envvar="FLASHBULB_API_KEY", default=None, help="API key (FLASHBULB_API_KEY)."),
        click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _batch_client(server: str, key: str | None):  # noqa: ANN202
    from flashbulb.batchclient import BatchClient

    if not key:
        err.print("[red]error:[/red] give an API key with --key or FLASHBULB_API_KEY")
        sys.exit(BATCH_BAD_INPUT)
    return BatchClient(server, key)


def _batch_call(call, as_json: bool):  # noqa: ANN001, ANN202
    """Run a client call; a failure exits 2 (the server refused our input) or 3 (server or network)."""
    from flashbulb.batchclient import RemoteError

    try:
        return call()
    except RemoteError as error:
        code = BATCH_BAD_INPUT if error.bad_input else BATCH_SERVER_ERROR
        if as_json:
            print(json.dumps({"ok": False, "error": error.message, "exit_code": code}))
        err.print(f"[red]error:[/red] {error.message}")
        sys.exit(code)


def _batch_summary(batch: dict) -> dict:
    from flashbulb.batchclient import state, stats

    total, succeeded, failed, pending = stats(batch)
    output = batch.get("metadata", {}).get("output") or {}
    return {
        "name": batch["name"], "state": state(batch), "model": batch.get("metadata", {}).get("model", ""),
        "display_name": batch.get("metadata", {}).get("displayName", ""), "requests": total, "succeeded": succeeded,
        "failed": failed, "pending": pending, "done": bool(batch.get("done")),
        "responses_file": output.get("responsesFile"), "create_time": batch.get("metadata", {}).get("createTime"),
    }


@main.group()
def batch() -> None:
    """Batch jobs on a flashbulb server: discounted, run in the background, kept across restarts."""


@batch.command("submit")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", required=True, help="Model for every request (e.g. flashbulb-photo).")
@click.option("--display-name", default="", help="A name to recognise the batch by.")
@_batch_options
def batch_submit(file: Path, model: str, display_name: str, server: str, key: str | None, as_json: bool) -> None:
    """Upload FILE (JSONL: one {"key": ..., "request": {generateContent body}} per line) and start a batch; prints its name."""
    from flashbulb.batchclient import check_jsonl

    client = _batch_client(server, key)
    count = _batch_call(lambda: check_jsonl(file), as_json)
    file_name = _batch_call(lambda: client.upload(file), as_json)
    created = _batch_call(lambda: client.create(model, file_name, display_name or file.name), as_json)
    if as_json:
        print(json.dumps({"ok": True, **_batch_summary(created), "input_file": file_name}))
    else:
        err.print(f"submitted {count} requests from {file} ({file_name})")
        print(created["name"])


@batch.command("status")
@click.argument("batch_id")
@click.option("--wait", is_flag=True, help="Show a progress bar until the batch is done.")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between polls with --wait.")
@_batch_options
def batch_status(batch_id: str, wait: bool, interval: float, server: str, key: str | None, as_json: bool) -> None:
    """Where a batch stands (exit 4 if it failed or was cancelled)."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from flashbulb.batchclient import stats

    client = _batch_client(server, key)
    current = _batch_call(lambda: client.get(batch_id), as_json)
    if wait and not current.get("done"):
        columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err, transient=as_json) as progress:
            task = progress.add_task(current["name"], total=stats(current)[0] or None)
            while True:
                total, succeeded, failed, _pending = stats(current)
                progress.update(task, total=total or None, completed=succeeded + failed,
                                description=f"{current['name']} {current['metadata']['state'].removeprefix('BATCH_STATE_').lower()}")
                if current.get("done"):
                    break
                time.sleep(interval)
                current = _batch_call(lambda: client.get(batch_id), as_json)
    summary = _batch_summary(current)
    if as_json:
        print(json.dumps(summary))
    else:
        err.print(f"{summary['name']}: {summary['state'].removeprefix('BATCH_STATE_')}  {summary['succeeded']} succeeded, "
                  f"{summary['failed']} failed, {summary['pending']} pending of {summary['requests']}")
    sys.exit(BATCH_FAILED if summary["state"] in BATCH_NOT_OK else BATCH_OK)


@batch.command("results")
@click.argument("batch_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSONL results here (default: stdout).")
@_batch_options
def batch_results(batch_id: str, output: Path | None, server: str, key: str | None, as_json: bool) -> None:
    """The results of a finished batch as JSONL, in input order: {"key", "response"} or {"key", "error"}."""
    client = _batch_client(server, key)
    current = _batch_call(lambda: client.get(batch_id), as_json)
    if not current.get("done"):
        err.print(f"[red]error:[/red] {current['name']} is not done yet; `flashbulb batch status {batch_id} --wait` waits for it")
        sys.exit(BATCH_BAD_INPUT)
    if output is None:
        lines = _batch_call(lambda: client.results(current, sys.stdout.buffer), as_json)
        sys.stdout.flush()
    else:
        with open(output, "wb") as out:
            lines = _batch_call(lambda: client.results(current, out), as_json)
    summary = _batch_summary(current)
    if as_json and output is not None:
        print(json.dumps({**summary, "output": str(output), "lines": lines}))
    else:
        err.print(f"{lines} results{f' written to {output}' if output else ''} ({summary['succeeded']} succeeded, {summary['failed']} failed)")
    sys.exit(BATCH_FAILED if summary["state"] in BATCH_NOT_OK else BATCH_OK)


@batch.command("list")
@click.option("--limit", default=20, show_default=True)
@_batch_options
def batch_list(limit: int, server: str, key: str | None, as_json: bool) -> None:
    """Your batches, newest first."""
    client = _batch_client(server, key)
    found = [_batch_summary(b) for b in _batch_call(lambda: client.list(limit), as_json)]
    if as_json:
        print(json.dumps(found))
        return
    table = Table("name", "state", "model", "done", "failed", "created", "display name")
    for b in found:
        table.add_row(b["name"], b["state"].removeprefix("BATCH_STATE_").lower(), b["model"].removeprefix("models/"),
                      f"{b['succeeded'] + b['failed']}/{b['requests']}", str(b["failed"]), b["create_time"] or "", b["display_name"])
    Console().print(table)


@batch.command("cancel")
@click.argument("batch_id")
@_batch_options
def batch_cancel(batch_id: str, server: str, key: str | None, as_json: bool) -> None:
    """Cancel a batch: requests not started get a CANCELLED error; running ones finish."""
    client = _batch_client(server, key)
    _batch_call(lambda: client.cancel(batch_id), as_json)
    summary = _batch_summary(_batch_call(lambda: client.get(batch_id), as_json))
    if as_json:
        print(json.dumps(summary))
    else:
        err.print(f"{summary['name']}: cancel requested ({summary['state'].removeprefix('BATCH_STATE_').lower()})")


# ==== end of batch ====


if __name__ == "__main__":
    main()
