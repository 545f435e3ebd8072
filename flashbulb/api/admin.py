"""Admin HTTP endpoints (behind an admin key): the same operations as `flashbulb keys|credits|usage`."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from flashbulb.api.gemini import api_key_of
from flashbulb.config import micros_to_usd, usd_to_micros
from flashbulb.engine.types import Caller
from flashbulb.errors import ErrorKind, FlashbulbError, invalid
from flashbulb.gateway import accounts, ledger, usage
from flashbulb.gateway.gateway import Gateway

MAX_PAGE = 1000  # usage records in one JSON page
MAX_CSV_ROWS = 100_000


class CreateKey(BaseModel):
    account: str
    key_name: str = "default"
    credits_usd: str = "0"
    admin: bool = False


class AddCredits(BaseModel):
    account: str
    usd: str
    note: str = ""


def _micros(usd: str) -> int:
    try:
        return usd_to_micros(usd)
    except ValueError as exc:
        raise invalid(str(exc)) from exc


def build_router(gateway: Gateway) -> APIRouter:
    router = APIRouter()
    db = gateway.db

    async def admin(request: Request) -> Caller:
        caller = await gateway.authenticate(api_key_of(request))
        if not caller.is_admin:
            raise FlashbulbError(ErrorKind.PERMISSION_DENIED, "this endpoint needs an admin key")
        return caller

    @router.post("/keys")
    async def create_key(request: Request, body: CreateKey) -> dict:
        await admin(request)
        new = await asyncio.to_thread(
            accounts.create_key, db, body.account, key_name=body.key_name, credits_micros=_micros(body.credits_usd), admin=body.admin
        )
        return {"key": new.key, "account": body.account, "keyId": new.key_id}

    @router.get("/keys")
    async def list_keys(request: Request) -> dict:
        await admin(request)
        return {"keys": await asyncio.to_thread(accounts.list_keys, db)}

    @router.post("/credits")
    async def add_credits(request: Request, body: AddCredits) -> dict:
        await admin(request)
        balance = await asyncio.to_thread(ledger.grant, db, body.account, _micros(body.usd), body.note)
        return {"account": body.account, "balanceMicros": balance, "balanceUsd": micros_to_usd(balance)}

    @router.get("/usage")
    async def usage_report(request: Request, limit: int = 100) -> dict:
        await admin(request)
        return {
            "records": await asyncio.to_thread(usage.recent, db, limit=limit),
            "totals": await asyncio.to_thread(usage.totals, db),
        }

    return router


def build_account_router(gateway: Gateway) -> APIRouter:
    """What any key may read about its own account."""
    router = APIRouter()

    @router.get("/account")
    async def account(request: Request) -> dict:
        caller = await gateway.authenticate(api_key_of(request))
        balance, held = await asyncio.to_thread(ledger.balance, gateway.db, caller.account_id)
        return {
            "account": caller.account_name,
            "balanceMicros": balance,
            "heldMicros": held,
            "availableMicros": balance - held,
            "balanceUsd": micros_to_usd(balance),
        }

    @router.get("/account/usage")
    async def account_usage(request: Request, limit: int = 100, pageToken: str = "") -> dict:  # noqa: N803
        """Newest first; pass the answer's `nextPageToken` as `pageToken` for older records."""
        caller = await gateway.authenticate(api_key_of(request))
        if not 1 <= limit <= MAX_PAGE:
            raise invalid(f"limit must be between 1 and {MAX_PAGE}", param="limit")
        records, next_token = await asyncio.to_thread(
            usage.page, gateway.db, account_id=caller.account_id, limit=limit, page_token=pageToken
        )
        return {"records": records, **({"nextPageToken": next_token} if next_token else {})}

    @router.get("/account/usage/summary")
    async def account_usage_summary(request: Request, days: int = 30) -> dict:
        """Spend per UTC day (every day of the window, zeros included) and per model."""
        caller = await gateway.authenticate(api_key_of(request))
        if not 1 <= days <= 366:
            raise invalid("days must be between 1 and 366", param="days")
        return await asyncio.to_thread(usage.summary, gateway.db, account_id=caller.account_id, days=days)

    @router.get("/account/usage.csv")
    async def account_usage_csv(request: Request, limit: int = 10_000) -> Response:
        """The newest `limit` usage records as a CSV file (for a spreadsheet or an invoice check)."""
        caller = await gateway.authenticate(api_key_of(request))
        if not 1 <= limit <= MAX_CSV_ROWS:
            raise invalid(f"limit must be between 1 and {MAX_CSV_ROWS}", param="limit")
        records = await asyncio.to_thread(usage.recent, gateway.db, account_id=caller.account_id, limit=limit)
        return Response(
            usage.to_csv(records),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="flashbulb-usage.csv"'},
        )

    return router
