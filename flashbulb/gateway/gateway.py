"""The gateway around every request: authenticate, quote, hold credit, run, settle or release.

Wire formats call `authenticate` and `run`; backends never see keys or money.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable

from sqlalchemy import Connection
from sqlalchemy import Engine as Database

from flashbulb.billing import ledger, quotes
from flashbulb.billing.prices import PriceBook
from flashbulb.clock import clock
from flashbulb.config import Settings
from flashbulb.engine.engine import Engine
from flashbulb.engine.types import Caller, Cancelled, FinishReason, ImageRequest, ImageResult, JobContext
from flashbulb.errors import ErrorKind, FlashbulbError
from flashbulb.gateway import accounts
from flashbulb.gateway.ratelimits import Lease, RateLimiter
from flashbulb.provenance import Provenance, Sign, unsigned, verify
from flashbulb.store.db import unavailable

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
    quote: quotes.Quote | None = None  # the unit prices charged, when something was (the response's price_micros)
    rendered: object = None  # the answer in the caller's wire format, built before the charge was settled
    sign: Sign = unsigned  # puts the content credentials into each encoded image (provenance)


# Builds the caller's answer from a Served (off the event loop). The gateway calls it before it
# settles: an answer that can't be built is an error the caller is not charged for.
Renderer = Callable[["Served"], object]

# Given how a request ended (Served, or the exception it ended with), the statements to commit in
# the transaction that settles or releases its hold; called off the event loop. A batch item
# writes its result this way, so it can never be charged without its result or the reverse.
Recorder = Callable[["Served | BaseException"], Callable[[Connection], None] | None]


async def _succeeded(task: asyncio.Future) -> bool:
    """Wait for `task` (even if this coroutine is cancelled again); whether it ended without error."""
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            continue
        except Exception:  # noqa: BLE001 (its error is reported by whoever else awaits it, or nobody)
            break
    return task.done() and not task.cancelled() and task.exception() is None


KEY_CACHE_S = 5.0  # how long a customer key's lookup is reused (see Gateway.authenticate)
MAX_CACHED_KEYS = 10_000

# The most text one request may carry (prompt and system instruction each): gpt-image-1's prompt limit.
# Gemini's image models take 32,768 tokens, about 4x this, but no image prompt needs that much, and
# a 10 MB prompt held the photo worker for as long as its client waited (measured).
MAX_PROMPT_CHARS = 32_000


def check_request(request: ImageRequest) -> None:
    """What every model refuses, whatever the wire format: a 400 before any hold."""
    if request.seed is not None and not 0 <= request.seed < 2**63:
        raise FlashbulbError(ErrorKind.INVALID_ARGUMENT, "seed must be a whole number from 0 to 2^63-1", param="seed")
    for field, text in (("prompt", request.prompt), ("systemInstruction", request.system)):
        if len(text) > MAX_PROMPT_CHARS:
            raise FlashbulbError(
                ErrorKind.INVALID_ARGUMENT, f"{field} is {len(text):,} characters; the limit is {MAX_PROMPT_CHARS:,}", param=field
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\udc00" in JSON): nothing could store or echo it
            raise FlashbulbError(
                ErrorKind.INVALID_ARGUMENT, f"{field} is not valid Unicode text (an unpaired surrogate escape)", param=field
            ) from None


class Gateway:
    def __init__(self, db: Database, engine: Engine, settings: Settings):
        self.db = db
        self.engine = engine
        self.settings = settings
        self.prices = PriceBook(settings.prices, engine.registry.priced_as())
        self.limiter = RateLimiter(settings.rate_limits, max_lease_s=settings.hold_ttl_s)
        self._leases: dict[str, Lease] = {}  # request id -> its rate limit slots, from reserve to fulfil
        # request id -> (the unit prices its hold recorded, when (monotonic)), from reserve to fulfil
        self._quotes: dict[str, tuple[quotes.Quote, float]] = {}
        self.marks_recorded = 0  # watermarks in the usage records, as of the last sweep (count_marks)
        self._unclosed: dict[str, ledger.Usage] = {}  # holds a database outage kept open: released when it is back
        self.provenance = Provenance(settings)
        self._callers: dict[str, tuple[Caller, float]] = {}  # sha256 of a key -> (its caller, until when (monotonic))

    async def authenticate(self, api_key: str | None) -> Caller:
        """The caller a key names. A customer's key is looked up once per KEY_CACHE_S (the lookup was
        0.9 ms of a call's ~8 ms overhead, bench/server_overhead.py): what spends money re-checks the
        key in its hold (revoked, expired, over its cap: refused at once, on every server), so a
        revocation only takes up to KEY_CACHE_S to reach reads such as the usage page. Admin keys are
        looked up every time; this server forgets every cached key when it revokes one."""
        digest = ledger.hash_secret(api_key) if api_key else ""
        cached = self._callers.get(digest)
        if cached is not None and cached[1] > clock.monotonic():
            return cached[0]
        caller = await asyncio.to_thread(accounts.authenticate, self.db, api_key)
        if not caller.is_admin:
            if len(self._callers) >= MAX_CACHED_KEYS:
                self._callers.clear()
            self._callers[digest] = (caller, clock.monotonic() + min(KEY_CACHE_S, caller.expires_in_s or KEY_CACHE_S))
        return caller

    def forget_keys(self) -> None:
        """Drop every cached key lookup (a key was revoked or changed here)."""
        self._callers.clear()

    async def run(self, request: ImageRequest, job: JobContext | None = None, render: Renderer | None = None) -> Served:
        """Hold credit, run, settle or release: the whole life of one request."""
        await self.reserve(request)
        return await self.fulfil(request, job or JobContext(), render=render)

    async def reserve(self, request: ImageRequest, *, discount_percent: int = 0) -> None:
        """Quote and hold the full price (429 when the credit is not there). `fulfil` must follow;
        if it never does (a crash, a stream that never started) the hold expires and is released."""
        assert request.caller is not None
        entry = self.engine.registry.resolve(request.model)
        accounts.check_scope(request.caller, request.model, entry.name)  # a key scoped to other models: 403
        request.model = entry.name
        check_request(request)
        request.watermark = self.provenance.payload()
        request.watermark_doubts = verify.doubts_for(self.marks_recorded)
        entry.check(request)  # not installed, or a request this model can't serve: 400 before any hold
        # Rate limits come before the hold, so a refused call is never charged. Batch items
        # (priority 1) are exempt: the batch runner meters them itself ([batch] max_in_flight).
        lease = await self.limiter.acquire(request.caller) if request.priority == 0 else None
        try:
            await self._hold(request, entry, discount_percent)
        except BaseException:
            await self.limiter.release(lease)
            raise
        if lease is not None:
            self._leases[request.request_id] = lease

    async def _hold(self, request: ImageRequest, entry, discount_percent: int) -> None:
        assert request.caller is not None  # reserve() checked it
        quote = quotes.quote(self.prices.schedule(entry.name), request, discount_percent)
        holding = asyncio.ensure_future(
            asyncio.to_thread(
                ledger.hold,
                self.db,
                request_id=request.request_id,
                account_id=request.caller.account_id,
                key_id=request.caller.key_id,
                model=entry.name,
                amount_micros=quote.hold_micros,
                ttl_s=self.settings.hold_ttl_s,
                quote=quote,
            )
        )
        try:
            await asyncio.shield(holding)
        except asyncio.CancelledError:
            # The caller left while the hold was being written (a thread can't be stopped): let it
            # finish and give the credit back now, rather than leave it held until the hold expires.
            if not await _succeeded(holding):
                raise
            usage = ledger.Usage(status="cancelled", error="the client went away before the call started")
            await asyncio.shield(asyncio.to_thread(ledger.close_hold, self.db, request.request_id, 0, usage))
            raise
        self._quotes[request.request_id] = (quote, time.monotonic())  # the hold recorded these; the settlement charges them

    async def fulfil(
        self,
        request: ImageRequest,
        job: JobContext,
        *,
        discount_percent: int = 0,
        record: Recorder | None = None,
        render: Renderer | None = None,
    ) -> Served:
        """Run a reserved request. Its hold is closed exactly once, whatever happens."""
        entry = self.engine.registry.resolve(request.model)
        started = time.perf_counter()
        usage = ledger.Usage(status="error", input_images=len(request.images), input_pixels=request.input_pixels)
        charge = 0
        output_pixels: list[int] | None = None
        held = self._quotes.pop(request.request_id, None)
        quote = held[0] if held else quotes.quote(self.prices.schedule(entry.name), request, discount_percent)
        outcome: Served | BaseException = asyncio.CancelledError()
        try:
            result = await asyncio.wait_for(self.engine.run(request, job), self.settings.request_timeout_s)
            charge = quotes.charge(quote, result)
            output_pixels = [im.width * im.height for im in result.images] if charge else None
            served = Served(
                result=result,
                charge_micros=charge,
                quote=quote if charge else None,
                sign=self.provenance.signer_for(request, result),
            )
            if render is not None:
                served.rendered = await asyncio.to_thread(render, served)
            # Only now, with the answer built: what it measured is as writable as the answer was.
            usage.status = _STATUS[result.finish_reason]
            usage.finish_reason = result.finish_reason.value
            usage.output_images = len(result.images)
            usage.output_pixels = result.output_pixels
            usage.quality = {**result.quality, "timings_ms": result.timings_ms}
            usage.replica = result.replica
            usage.watermark = result.watermark
            outcome = served
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
            lease = self._leases.pop(request.request_id, None)
            try:
                # Shielded: a cancelled caller must still settle or release its hold.
                pixels = output_pixels if isinstance(outcome, Served) else None
                await asyncio.shield(asyncio.to_thread(self._close, request.request_id, charge, usage, outcome, record, pixels))
            except Exception as exc:
                if not unavailable(exc):
                    raise
                # The database went away (a restart, a failover): the answer can't be paid for, so
                # it isn't given; the hold is released as soon as the database is back.
                log.warning(
                    "request %s: the database is unavailable; its hold will be released when it is back", request.request_id
                )
                usage.status, usage.error = "error", "the database was unavailable when the call finished"
                self._unclosed[request.request_id] = usage
                raise FlashbulbError(
                    ErrorKind.UNAVAILABLE,
                    "The database is unavailable for a moment; nothing was charged. Retry shortly.",
                    retry_after_s=2,
                ) from exc
            finally:
                await self.limiter.release(lease)  # the rate limit slot, exactly once

    def count_marks(self) -> None:
        """Recount the marks recorded (the sweep does, off the request path): verify's doubt budget,
        which a worker's mark must fit to be claimed, shrinks as they grow."""
        with self.db.connect() as conn:
            self.marks_recorded = verify.marks_recorded(conn)

    async def release_expired(self) -> int:
        """Release the holds that expired (a reserve no fulfil followed: a crash, a stream whose
        client left before it began) and forget their quote and rate limit slots. Returns how many."""
        released = await asyncio.to_thread(ledger.release_expired, self.db)
        # Also forget reservations older than any hold: another server sharing the database may
        # have released them (its sweep found them first).
        too_old = time.monotonic() - self.settings.hold_ttl_s
        forgotten = [rid for rid, (_, at) in self._quotes.items() if at < too_old]
        for request_id in {*released, *forgotten}:
            self._quotes.pop(request_id, None)
            await self.limiter.release(self._leases.pop(request_id, None))
        return len(released)

    def release_unclosed(self) -> int:
        """Release the holds a database outage kept `fulfil` from closing (nothing is charged for
        them: their callers got a 503). Returns how many; stops at the first that still fails."""
        released = 0
        for request_id, usage in list(self._unclosed.items()):
            ledger.close_hold(self.db, request_id, 0, usage)
            del self._unclosed[request_id]
            released += 1
        return released

    async def release_unclosed_forever(self, every_s: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            if self._unclosed:
                try:
                    if released := await asyncio.to_thread(self.release_unclosed):
                        log.warning("released %d holds left open by a database outage", released)
                except Exception as exc:  # still down: try again in a moment
                    if not unavailable(exc):
                        log.exception("releasing holds left by a database outage failed")

    def _close(
        self,
        request_id: str,
        charge: int,
        usage: ledger.Usage,
        outcome: Served | BaseException,
        record: Recorder | None,
        output_pixels: list[int] | None = None,
    ) -> None:
        also = record(outcome) if record is not None else None
        # With output_pixels the ledger charges the unit prices recorded on the hold (the same quote
        # `charge` was computed from, so the caller is shown exactly what the ledger charges).
        ledger.close_hold(self.db, request_id, charge if output_pixels else 0, usage, also=also, output_pixels=output_pixels)
