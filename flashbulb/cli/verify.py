"""`flashbulb verify FILE...`: each image's content credentials and watermark, checked against this
data dir's usage records (the operator sees every call) or a server's (--server: what its key may see)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.markup import escape

from flashbulb.cli.root import Context, err, main
from flashbulb.errors import ErrorKind, FlashbulbError


@main.command("verify")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--server", envvar="FLASHBULB_SERVER", default=None, help="Ask this flashbulb server instead of the local data dir."
)
@click.option("--key", envvar="FLASHBULB_API_KEY", default=None, help="API key for --server.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list, an entry per file.")
@click.pass_obj
def verify_files(obj: Context, files: tuple[Path, ...], server: str | None, key: str | None, as_json: bool) -> None:
    """Was each image made by flashbulb, and by which call?"""
    reports = []
    for path in files:
        try:
            report = _remote(path, server, key) if server else _local(obj, path)
        except FlashbulbError as error:
            report = {"error": error.message}
        reports.append({"file": str(path), **report})
    if as_json:
        print(json.dumps(reports, indent=2))
        return
    for report in reports:
        print(report["file"])
        if "error" in report:
            print(f"  error: {report['error']}")
            continue
        print(f"  content credentials: {_describe_c2pa(report['c2pa'])}")
        print(f"  watermark: {_describe_mark(report['watermark'])}")


def _local(obj: Context, path: Path) -> dict:
    from flashbulb.provenance import identity, verify

    settings = obj.settings
    anchor = (
        identity.load(settings.data_dir, settings.signing_cert, settings.signing_key).anchor_pem
        if settings.content_credentials
        else b""
    )
    return verify.verify(path.read_bytes(), db=obj.db, caller=None, trust_anchor_pem=anchor, max_pixels=settings.max_input_pixels)


def _remote(path: Path, server: str, key: str | None) -> dict:
    if not key:
        err.print("[red]error:[/red] --server needs --key (or FLASHBULB_API_KEY)")
        sys.exit(5)
    from flashbulb.client import Client

    client = Client(server, key)
    try:
        return client.request("POST", "/flashbulb/verify", files={"image": (path.name, path.read_bytes())}).json()
    except FlashbulbError as error:
        if error.kind is ErrorKind.UNAVAILABLE:  # the server can't be reached
            err.print(f"[red]error:[/red] {escape(error.message)}")
            sys.exit(3)
        return {"error": error.message}
    finally:
        client.close()


def _describe_c2pa(found: dict | None) -> str:
    if found is None:
        return "none (never signed, or stripped by a re-encode)"
    if not found.get("valid"):
        return f"INVALID ({', '.join(found.get('failures') or [found.get('error', '')])})"
    signer = found["signer"]
    actions = ", ".join(
        a["action"] + (f" ({a['parameters']['description']})" if "description" in a.get("parameters", {}) else "")
        for a in found["actions"]
    )
    trust = "trusted" if found["trusted"] else "valid, signer not in the trust list"
    return f"{trust}; {found['claim_generator']}, signed by {signer['common_name']} ({signer['issuer']}): {actions}"


def _describe_mark(mark: dict) -> str:
    if not mark.get("found"):
        return "not found" + (f" ({mark['why']})" if "why" in mark else "")
    who = f"request {mark['request_id']} of {mark['created']}, " if "request_id" in mark else "a call of another account, "
    return f"found: {who}{mark['model']} ({mark['bit_errors']} bit errors, confidence {mark['confidence']})"
