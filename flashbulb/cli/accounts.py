"""`flashbulb keys | credits | codes`: accounts, API keys and money, on the data directory's database."""

from __future__ import annotations

import json

import click

from flashbulb.api.records import all_as_json, wire_time
from flashbulb.billing.money import micros_to_usd, usd_to_micros
from flashbulb.cli.root import Context, fail, main, print_table
from flashbulb.errors import ErrorKind, FlashbulbError


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
    obj: Context,
    name: str,
    credits_usd: str,
    key_name: str,
    admin: bool,
    models_csv: str | None,
    expires: str | None,
    cap_usd: str | None,
    referred_by: str | None,
) -> None:
    """Create a key; prints only the key on stdout (shown once, stored hashed)."""
    from flashbulb.gateway import accounts

    try:
        new = accounts.create_key(
            obj.db,
            name,
            key_name=key_name,
            credits_micros=_usd(credits_usd),
            admin=admin,
            models=models_csv.split(",") if models_csv is not None else None,
            expires_in=accounts.parse_duration(expires) if expires else None,
            cap_micros=_usd(cap_usd) if cap_usd is not None else None,
            referred_by=referred_by,
            referral_percent=obj.settings.referral_percent,
            referral_days=obj.settings.referral_days,
        )
    except FlashbulbError as error:
        fail(error)
    print(new.key)


def _usd(text: str) -> int:
    try:
        return usd_to_micros(text)
    except ValueError as exc:
        fail(FlashbulbError(ErrorKind.INVALID_ARGUMENT, str(exc)))


@keys.command("revoke")
@click.argument("key_id", type=int)
@click.pass_obj
def keys_revoke(obj: Context, key_id: int) -> None:
    """Revoke the key KEY_ID (see `flashbulb keys list`): it is refused from now on."""
    from flashbulb.gateway import accounts

    try:
        changed = accounts.revoke_key(obj.db, key_id)
    except FlashbulbError as error:
        fail(error)
    print(f"key {key_id}: {'revoked' if changed else 'was already revoked'}")


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def keys_list(obj: Context, as_json: bool) -> None:
    from flashbulb.gateway import accounts

    rows = accounts.list_keys(obj.db)
    if as_json:
        print(json.dumps(all_as_json(rows), indent=2))
        return
    lines = []
    for r in rows:
        cap = (
            f"{micros_to_usd(r.spent_micros)} / {micros_to_usd(r.cap_micros)}"
            if r.cap_micros is not None
            else micros_to_usd(r.spent_micros)
        )
        lines.append(
            [
                r.account,
                "yes" if r.admin else "",
                micros_to_usd(r.balance_micros),
                micros_to_usd(r.held_micros),
                str(r.key_id),
                r.key_name,
                r.key_prefix + "…",
                wire_time(r.created_at),
                "yes" if r.revoked else "",
                wire_time(r.expires_at) if r.expires_at else "",
                ",".join(r.models) if r.models is not None else "all",
                cap,
                r.referral_code or "",
            ]
        )
    columns = [
        "account",
        "admin",
        "balance USD",
        "held USD",
        "key id",
        "key name",
        "key prefix",
        "created",
        "revoked",
        "expires",
        "models",
        "spent / cap USD",
        "referral code",
    ]
    print_table(columns, lines, whole=("account", "key id", "key prefix", "referral code"))


@main.group()
def credits() -> None:
    """Grant and refund credits; show an account's ledger."""


@credits.command("add")
@click.argument("account")
@click.argument("usd")
@click.pass_obj
def credits_add(obj: Context, account: str, usd: str) -> None:
    """Add USD credits to ACCOUNT (negative to remove)."""
    from flashbulb.billing import ledger

    try:
        balance = ledger.grant(obj.db, account, _usd(usd), note="flashbulb credits add")
    except FlashbulbError as error:
        fail(error)
    print(f"{account}: balance {micros_to_usd(balance)} USD")


@credits.command("refund")
@click.argument("request_id")
@click.argument("usd", required=False)
@click.option("--note", default="", help="Why (kept in the ledger).")
@click.pass_obj
def credits_refund(obj: Context, request_id: str, usd: str | None, note: str) -> None:
    """Refund the charge of REQUEST_ID, all of it or USD of it (once; never more than was charged)."""
    from flashbulb.billing import ledger

    try:
        done = ledger.refund(obj.db, request_id, _usd(usd) if usd is not None else None, note or "flashbulb credits refund")
    except FlashbulbError as error:
        fail(error)
    clawed = f", {micros_to_usd(done.clawed_back_micros)} USD commission clawed back" if done.clawed_back_micros else ""
    print(f"{request_id}: refunded {micros_to_usd(done.refunded_micros)} of {micros_to_usd(done.charged_micros)} USD{clawed}")


@credits.command("history")
@click.argument("account")
@click.option("--limit", default=50, show_default=True, help="How many entries, newest first.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def credits_history(obj: Context, account: str, limit: int, as_json: bool) -> None:
    """ACCOUNT's ledger: every grant, code, charge, refund and commission, with the balance after each."""
    from flashbulb.billing import usage

    try:
        entries, _next = usage.statement(obj.db, usage.account_id_of(obj.db, account), limit=limit)
    except FlashbulbError as error:
        fail(error)
    if as_json:
        print(json.dumps(all_as_json(entries), indent=2))
        return
    lines = [
        [
            wire_time(e.created_at),
            e.kind,
            micros_to_usd(e.amount_micros),
            micros_to_usd(e.balance_after_micros),
            e.request_id or "",
            e.note,
        ]
        for e in entries
    ]
    print_table(
        ["when", "kind", "USD", "balance USD", "request", "note"], lines, whole=("request",), title=f"{account}: newest first"
    )


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
    from flashbulb.billing import ledger
    from flashbulb.gateway import accounts
    from flashbulb.store.tables import utcnow

    try:
        until = utcnow() + accounts.parse_duration(expires) if expires else None
        for _ in range(count):
            print(ledger.create_code(obj.db, _usd(usd), expires_at=until, note=note))
    except FlashbulbError as error:
        fail(error)
