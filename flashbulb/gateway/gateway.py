"""The gateway around every request: authenticate, quote, hold credit, run, settle or release.

Wire formats call `authenticate` and `run`; backends never see keys or money.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Callable

from sqlalchemy import Connection
from sqlalchemy import Engine as Database

from flashbulb.config import Settings
from flashbulb.engine.engine import Engine
from flashbulb.engine.types import Caller, Cancelled, FinishReason, ImageRequest, ImageResult, JobContext
from flashbulb.errors import ErrorKind, FlashbulbError
from flashbulb.gateway import accounts, ledger, pricing

log = logging.getLogger("flashbulb.gateway")

_STATUS = {
    FinishReason.STOP: "ok",
    FinishReason.NO_IMAGE: "no_image",
    FinishReason.IMAGE_SAFETY: "blocked",
    FinishReason.IMAGE_OTHER: "no_image",
}


@dataclasses.dataclass
class Served:
    """A result as the caller receives it: what the engine made and what it cost."""

    result: ImageResult
    charge_micros: int


# Given how a request ended (Served, or the exception it ended with), the statements to commit in
# the transaction that settles or releases its hold; called off the event loop. A batch item
# writes its result this way, so it can never be charged without its result or the reverse.
Recorder = Callable[["Served | BaseException"], Callable[[Connection], None] | None]


class Gateway:
    def __init__(self, db: Database, engine: Engine, settings: Settings):
        self.db = db
        self.engine = engine
        self.settings = settings

    async def authenticate(self, api_key: str | None) -> Caller:
        return await asyncio.to_thread(accounts.authenticate, self.db, api_key)

    async def run(self, request: ImageRequest, job: JobContext | None = None) -> Served:
        """Hold credit, run, settle or release: the whole life of one request."""
        await self.reserve(request)
        return await self.fulfil(request, job or JobContext())

    async def reserve(self, request: ImageRequest, *, discount_percent: int = 0) -> None:
        """Quote and hold the full price (429 when the credit is not there). `fulfil` must follow;
        if it never does (a crash, a stream that never started) the hold expires and is released."""
        assert request.caller is not None
        entry = self.engine.registry.resolve(request.model)
        request.model = entry.name
        entry.check(request)  # not installed, or a request this model can't serve: 400 before any hold
        await asyncio.to_thread(
            ledger.hold,
            self.db,
            request_id=request.request_id,
            account_id=request.caller.account_id,
            key_id=request.caller.key_id,
            model=entry.name,
            amount_micros=pricing.quote(entry, request, discount_percent),
            ttl_s=self.settings.hold_ttl_s,
        )

    async def fulfil(
        self, request: ImageRequest, job: JobContext, *, discount_percent: int = 0, record: Recorder | None = None
    ) -> Served:
        """Run a reserved request. Its hold is closed exactly once, whatever happens."""
        entry = self.engine.registry.resolve(request.model)
        started = time.perf_counter()
        usage = ledger.Usage(status="error", input_images=len(request.images), input_pixels=request.input_pixels)
        charge = 0
        outcome: Served | BaseException = asyncio.CancelledError()
        try:
            result = await asyncio.wait_for(self.engine.run(request, job), self.settings.request_timeout_s)
            charge = pricing.charge(entry, result, discount_percent)
            usage.status = _STATUS[result.finish_reason]
            usage.finish_reason = result.finish_reason.value
            usage.output_images = len(result.images)
            usage.output_pixels = result.output_pixels
            usage.quality = {**result.quality, "timings_ms": result.timings_ms}
            outcome = Served(result=result, charge_micros=charge)
            return outcome
        except (asyncio.CancelledError, Cancelled) as exc:
            outcome = exc
            usage.status, usage.error = "cancelled", "the client went away"
            raise
        except TimeoutError as exc:
            job.cancel.set()
            usage.error = f"timed out after {self.settings.request_timeout_s:g}s"
            outcome = FlashbulbError(ErrorKind.DEADLINE_EXCEEDED, f"The request {usage.error}.")
            raise outcome from exc
        except FlashbulbError as exc:
            outcome = exc
            usage.error = exc.message
            raise
        except Exception as exc:
            log.exception("request %s failed in %s", request.request_id, entry.name)
            usage.error = f"{exc.__class__.__name__}: {exc}"
            outcome = FlashbulbError(ErrorKind.INTERNAL, f"{entry.name} failed on this request; you were not charged.")
            raise outcome from exc
        finally:
            usage.latency_ms = round((time.perf_counter() - started) * 1000)
            # Shielded: a cancelled caller must still settle or release its hold.
            await asyncio.shield(asyncio.to_thread(self._close, request.request_id, charge, usage, outcome, record))

    def _close(self, request_id: str, charge: int, usage: ledger.Usage, outcome: Served | BaseException, record: Recorder | None) -> None:
        also = record(outcome) if record is not None else None
        ledger.close_hold(self.db, request_id, charge, usage, also=also)
