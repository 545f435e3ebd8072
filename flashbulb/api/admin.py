"""Admin HTTP endpoints (behind an admin key): the same operations as `flashbulb keys|credits|usage`."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from flashbulb.api.records import all_as_json, report_json, spend_row_json, summary_json, totals_json
from flashbulb.api.serving import ADMIN, Authenticated
from flashbulb.billing import ledger, usage
from flashbulb.billing.money import micros_to_usd, usd_to_micros
from flashbulb.errors import invalid
from flashbulb.gateway import accounts
from flashbulb.gateway.gateway import Gateway
from flashbulb.store.tables import utcnow

MAX_PAGE = 1000  # usage records in one JSON page
MAX_CSV_ROWS = 100_000


class CreateKey(BaseModel):
    account: str
    key_name: str = "default"
    credits_usd: str = "0"
    admin: bool = False
    models: list[str] | None = None  # scope: the models the key may call (None: all)
    expires: str | None = None  # "30d", "12h": the key stops working after this long
    cap_usd: str | None = None  # the most the key may ever spend (settled + held, net of refunds)
    referred_by: str | None = None  # a referral code: its account earns a commission on this one's spend


class CreateCode(BaseModel):
    usd: str
    expires: str | None = None
    note: str = ""


class Refund(BaseModel):
    request_id: str
    usd: str | None = None  # None: the whole charge
    note: str = ""


class Redeem(BaseModel):
    code: str


class AddCredits(BaseModel):
    account: str
    usd: str
    note: str = ""


def check_limit(limit: int, most: int) -> None:
    if not 1 <= limit <= most:
        raise invalid(f"limit must be between 1 and {most}", param="limit")


def _page_token(request: Request, page_token: str = "") -> str:
    """flashbulb's own JSON is snake_case. A camelCase `pageToken` (this API's name for it before)
    would be ignored and the first page served again, so a paging loop would never end: refused."""
    if "pageToken" in request.query_params:
        raise invalid("flashbulb's own endpoints take page_token (snake_case), not pageToken", param="pageToken")
    return page_token


PageToken = Annotated[str, Depends(_page_token)]


def _micros(usd: str) -> int:
    try:
        return usd_to_micros(usd)
    except ValueError as exc:
        raise invalid(str(exc)) from exc


def build_router(gateway: Gateway) -> APIRouter:
    router = APIRouter()
    db = gateway.db

    @router.post("/keys", dependencies=[ADMIN])
    async def create_key(request: Request, body: CreateKey) -> dict:
        settings = gateway.settings
        new = await asyncio.to_thread(
            accounts.create_key,
            db,
            body.account,
            key_name=body.key_name,
            credits_micros=_micros(body.credits_usd),
            admin=body.admin,
            models=body.models,
            expires_in=accounts.parse_duration(body.expires) if body.expires else None,
            cap_micros=_micros(body.cap_usd) if body.cap_usd is not None else None,
            referred_by=body.referred_by,
            referral_percent=settings.referral_percent,
            referral_days=settings.referral_days,
        )
        return {"key": new.key, "account": body.account, "key_id": new.key_id}

    @router.post("/keys/{key_id}/revoke", dependencies=[ADMIN])
    async def revoke_key(request: Request, key_id: int) -> dict:
        changed = await asyncio.to_thread(accounts.revoke_key, db, key_id)
        gateway.forget_keys()
        return {"key_id": key_id, "revoked": True, "already_revoked": not changed}

    @router.post("/codes", dependencies=[ADMIN])
    async def create_code(request: Request, body: CreateCode) -> dict:
        expires = accounts.parse_duration(body.expires) if body.expires else None
        code = await asyncio.to_thread(
            ledger.create_code, db, _micros(body.usd), expires_at=utcnow() + expires if expires else None, note=body.note
        )
        return {"code": code, "amount_micros": _micros(body.usd)}

    @router.post("/refunds", dependencies=[ADMIN])
    async def refund(request: Request, body: Refund) -> dict:
        amount = _micros(body.usd) if body.usd is not None else None
        done = await asyncio.to_thread(ledger.refund, db, body.request_id, amount, body.note)
        return {
            "request_id": done.request_id,
            "refunded_micros": done.refunded_micros,
            "charged_micros": done.charged_micros,
            "balance_micros": done.balance_micros,
            "clawed_back_micros": done.clawed_back_micros,
        }

    @router.get("/keys", dependencies=[ADMIN])
    async def list_keys(request: Request) -> dict:
        return {"keys": all_as_json(await asyncio.to_thread(accounts.list_keys, db))}

    @router.post("/credits", dependencies=[ADMIN])
    async def add_credits(request: Request, body: AddCredits) -> dict:
        balance = await asyncio.to_thread(ledger.grant, db, body.account, _micros(body.usd), body.note)
        return {"account": body.account, "balance_micros": balance, "balance_usd": micros_to_usd(balance)}

    @router.get("/usage", dependencies=[ADMIN])
    async def usage_report(request: Request, limit: int = 100) -> dict:
        check_limit(limit, MAX_PAGE)
        return {
            "records": all_as_json(await asyncio.to_thread(usage.recent, db, limit=limit)),
            "totals": totals_json(await asyncio.to_thread(usage.totals, db)),
        }

    @router.get("/usage/summary", dependencies=[ADMIN])
    async def usage_summary(
        request: Request,
        group: str = "account,model",
        start: str | None = Query(None, alias="from"),
        end: str | None = Query(None, alias="to"),
        account: str | None = None,
    ) -> dict:
        """Calls, images and charges per account, key, model, day and/or status (?group=account,day),
        over UTC days ?from= to ?to= (both included; default the last 30), rolled-up days included."""
        first, last = usage.window(start, end)
        account_id = await asyncio.to_thread(usage.account_id_of, db, account) if account else None
        return report_json(
            await asyncio.to_thread(
                usage.summarize, db, group=usage.parse_group(group), start=first, end=last, account_id=account_id
            )
        )

    @router.get("/ledger", dependencies=[ADMIN])
    async def account_ledger(request: Request, account: str, page_token: PageToken, limit: int = 100) -> dict:
        """One account's ledger entries (grants, charges, refunds, ...), newest first, with running balances."""
        account_id = await asyncio.to_thread(usage.account_id_of, db, account)
        return await statement_page(gateway, account_id, limit, page_token)

    return router


async def statement_page(gateway: Gateway, account_id: int, limit: int, page_token: str) -> dict:
    check_limit(limit, MAX_PAGE)
    entries, next_token = await asyncio.to_thread(usage.statement, gateway.db, account_id, limit=limit, page_token=page_token)
    balance, held = await asyncio.to_thread(ledger.balance, gateway.db, account_id)
    return {
        "balance_micros": balance,
        "held_micros": held,
        "entries": all_as_json(entries),
        **({"next_page_token": next_token} if next_token else {}),
    }


def build_account_router(gateway: Gateway) -> APIRouter:
    """What any key may read about its own account."""
    router = APIRouter()

    @router.post("/account/redeem")
    async def redeem(request: Request, caller: Authenticated, body: Redeem) -> dict:
        """A redemption code (credits, once) or a referral code (sets this account's referrer, once)."""
        code = body.code.strip()
        if code.startswith(accounts.REFERRAL_PREFIX):
            settings = gateway.settings
            referrer = await asyncio.to_thread(
                ledger.set_referrer,
                gateway.db,
                caller.account_id,
                code,
                percent=settings.referral_percent,
                days=settings.referral_days,
            )
            return {"account": caller.account_name, "redeemed": "referral", "referrer": referrer}
        redeemed = await asyncio.to_thread(ledger.redeem_code, gateway.db, caller.account_id, code)
        return {
            "account": caller.account_name,
            "redeemed": "credits",
            "amount_micros": redeemed.amount_micros,
            "balance_micros": redeemed.balance_micros,
            "balance_usd": micros_to_usd(redeemed.balance_micros),
        }

    @router.get("/account/referral")
    async def referral(request: Request, caller: Authenticated) -> dict:
        """This account's referral code (to hand out) and whether it was referred itself."""
        info = await asyncio.to_thread(accounts.account_info, gateway.db, caller.account_id)
        return {
            "referral_code": info.referral_code,
            "referred": info.referred,
            **({"commission_percent": info.commission_percent} if info.referred else {}),
        }

    @router.get("/account")
    async def account(request: Request, caller: Authenticated) -> dict:
        balance, held = await asyncio.to_thread(ledger.balance, gateway.db, caller.account_id)
        return {
            "account": caller.account_name,
            "balance_micros": balance,
            "held_micros": held,
            "available_micros": balance - held,
            "balance_usd": micros_to_usd(balance),
            "admin": caller.is_admin,  # so a client knows before it calls /admin (the studio did, for 403s)
        }

    @router.get("/account/ledger")
    async def account_ledger(request: Request, caller: Authenticated, page_token: PageToken, limit: int = 100) -> dict:
        """Every movement of this account's balance, newest first, each with the balance after it:
        grants, redeemed codes, charges, refunds, commissions earned and clawed back."""
        return await statement_page(gateway, caller.account_id, limit, page_token)

    @router.get("/account/usage")
    async def account_usage(request: Request, caller: Authenticated, page_token: PageToken, limit: int = 100) -> dict:
        """Newest first; pass the answer's `next_page_token` as `page_token` for older records."""
        check_limit(limit, MAX_PAGE)
        records, next_token = await asyncio.to_thread(
            usage.page, gateway.db, account_id=caller.account_id, limit=limit, page_token=page_token
        )
        return {"records": all_as_json(records), **({"next_page_token": next_token} if next_token else {})}

    @router.get("/account/usage/summary")
    async def account_usage_summary(
        request: Request,
        caller: Authenticated,
        days: int = 30,
        group: str = "",
        start: str | None = Query(None, alias="from"),
        end: str | None = Query(None, alias="to"),
    ) -> dict:
        """Spend per UTC day (every day of the window, zeros included) and per model; with
        ?group=key,model,day also one row per combination ("rows"). The window is the last `days`
        days, or ?from= to ?to= (UTC days, both included)."""
        if not 1 <= days <= 366:
            raise invalid("days must be between 1 and 366", param="days")
        first, last = usage.window(start, end, default_days=days, max_days=366)
        body = summary_json(
            await asyncio.to_thread(usage.summary, gateway.db, account_id=caller.account_id, start=first, end=last)
        )
        if group:
            grouped = await asyncio.to_thread(
                usage.summarize, gateway.db, group=usage.parse_group(group), start=first, end=last, account_id=caller.account_id
            )
            body.update(group=list(grouped.group), rows=[spend_row_json(row, grouped.group) for row in grouped.rows])
        return body

    @router.get("/account/usage.csv")
    async def account_usage_csv(request: Request, caller: Authenticated, limit: int = 10_000) -> Response:
        """The newest `limit` usage records as a CSV file (for a spreadsheet or an invoice check)."""
        check_limit(limit, MAX_CSV_ROWS)
        records = await asyncio.to_thread(usage.recent, gateway.db, account_id=caller.account_id, limit=limit)
        return Response(
            usage.to_csv(records),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="flashbulb-usage.csv"'},
        )

    return router
