"""`flashbulb batch`: submit and follow batch jobs on a running server."""

from __future__ import annotations

import base64
import io
import json
import re
import sys
from pathlib import Path

import click

from flashbulb.cli.root import err, exit_code, main, print_table
from flashbulb.errors import FlashbulbError

# The server runs batches (durably, at the batch discount); these commands only talk to it.
BATCH_OK, BATCH_BAD_INPUT, BATCH_FAILED = 0, 2, 4
BATCH_NOT_OK = {"BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"}  # exit 4


def _batch_options(command):
    options = [
        click.option(
            "--server",
            envvar="FLASHBULB_SERVER",
            default="http://127.0.0.1:8080",
            show_default=True,
            help="The flashbulb server (FLASHBULB_SERVER).",
        ),
        click.option("--key", envvar="FLASHBULB_API_KEY", default=None, help="API key (FLASHBULB_API_KEY)."),
        click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _batch_client(server: str, key: str | None):
    from flashbulb.batchclient import BatchClient

    if not key:
        err.print("[red]error:[/red] give an API key with --key or FLASHBULB_API_KEY")
        sys.exit(BATCH_BAD_INPUT)
    return BatchClient(server, key)


def _batch_call(call, as_json: bool):
    """Run a client call; a failure exits 2 (the server refused our input), 3 (server or network) or 5 (key or credits)."""
    try:
        return call()
    except FlashbulbError as error:
        code = exit_code(error)
        if as_json:
            print(json.dumps({"ok": False, "error": error.message, "exit_code": code}))
        err.print(f"[red]error:[/red] {error.message}")
        sys.exit(code)


def _batch_summary(batch: dict) -> dict:
    from flashbulb.batchclient import state, stats

    total, succeeded, failed, pending = stats(batch)
    output = batch.get("metadata", {}).get("output") or {}
    return {
        "name": batch["name"],
        "state": state(batch),
        "model": batch.get("metadata", {}).get("model", ""),
        "display_name": batch.get("metadata", {}).get("displayName", ""),
        "requests": total,
        "succeeded": succeeded,
        "failed": failed,
        "pending": pending,
        "done": bool(batch.get("done")),
        "responses_file": output.get("responsesFile"),
        "create_time": batch.get("metadata", {}).get("createTime"),
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

    from flashbulb.batchclient import running, stats

    client = _batch_client(server, key)
    current = _batch_call(lambda: client.get(batch_id), as_json)
    if wait and not current.get("done"):
        columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err, transient=as_json) as progress:
            task = progress.add_task(current["name"], total=stats(current)[0] or None)
            while True:
                total, succeeded, failed, _pending = stats(current)
                state = current["metadata"]["state"].removeprefix("BATCH_STATE_").lower()
                now = f", {running(current)} running" if running(current) else ""
                # Finished requests fill the bar; those running now are named, so a slow first item shows.
                progress.update(
                    task, total=total or None, completed=succeeded + failed, description=f"{current['name']} {state}{now}"
                )
                if current.get("done"):
                    break
                time.sleep(interval)
                current = _batch_call(lambda: client.get(batch_id), as_json)
    summary = _batch_summary(current)
    if as_json:
        print(json.dumps(summary))
    else:
        err.print(
            f"{summary['name']}: {summary['state'].removeprefix('BATCH_STATE_')}  {summary['succeeded']} succeeded, "
            f"{summary['failed']} failed, {summary['pending']} pending of {summary['requests']}"
        )
    sys.exit(BATCH_FAILED if summary["state"] in BATCH_NOT_OK else BATCH_OK)


@batch.command("results")
@click.argument("batch_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the JSONL results here (default: stdout).",
)
@click.option(
    "--images",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write each result's images into this folder, as KEY-N.png.",
)
@_batch_options
def batch_results(batch_id: str, output: Path | None, images: Path | None, server: str, key: str | None, as_json: bool) -> None:
    """The results of a finished batch as JSONL, in input order: {"key", "response"} or {"key", "error"}."""
    client = _batch_client(server, key)
    current = _batch_call(lambda: client.get(batch_id), as_json)
    if not current.get("done"):
        err.print(f"[red]error:[/red] {current['name']} is not done yet; `flashbulb batch status {batch_id} --wait` waits for it")
        sys.exit(BATCH_BAD_INPUT)
    buffer = io.BytesIO()
    lines = _batch_call(lambda: client.results(current, buffer), as_json)
    if output is None:
        sys.stdout.buffer.write(buffer.getvalue())
        sys.stdout.flush()
    else:
        output.write_bytes(buffer.getvalue())
    if images is not None:
        written = _write_images(buffer.getvalue(), images)
        err.print(f"{written} images written to {images}")
    summary = _batch_summary(current)
    if as_json and output is not None:
        print(json.dumps({**summary, "output": str(output), "lines": lines}))
    else:
        err.print(
            f"{lines} results{f' written to {output}' if output else ''} ({summary['succeeded']} succeeded, {summary['failed']} failed)"
        )
    sys.exit(BATCH_FAILED if summary["state"] in BATCH_NOT_OK else BATCH_OK)


def _write_images(results: bytes, folder: Path) -> int:
    """Each result line's inline images as <folder>/<key>-<n>.png (keys made safe for a file name)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for raw in results.splitlines():
        line = json.loads(raw) if raw.strip() else {}
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(line.get("key", written)))[:100] or "result"
        for candidate in line.get("response", {}).get("candidates", []):
            for n, part in enumerate(p for p in candidate.get("content", {}).get("parts", []) if "inlineData" in p):
                (folder / f"{name}-{n}.png").write_bytes(base64.b64decode(part["inlineData"]["data"]))
                written += 1
    return written


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
    lines = [
        [
            b["name"],
            b["state"].removeprefix("BATCH_STATE_").lower(),
            b["model"].removeprefix("models/"),
            f"{b['succeeded'] + b['failed']}/{b['requests']}",
            str(b["failed"]),
            b["create_time"] or "",
            b["display_name"],
        ]
        for b in found
    ]
    print_table(["name", "state", "model", "done", "failed", "created", "display name"], lines, whole=("name", "model"))


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
