"""The batch runner: in each API server, it claims pending batch items and runs each through
the same gateway and engine as live traffic, at batch priority (live requests overtake it in the
model's queue) and with at most `batch_max_in_flight` items at once (so a big batch never fills
the queue live requests wait in).

Several servers share one database: a claimed item is leased to the server that runs it (`owner`,
`lease_until`), renewed by its heartbeat every `[batch] lease_s` / 3. Each server, at start-up and then at
every heartbeat, takes back only items whose lease expired (their server died): their open hold is
released and they run again; and it ends a batch whose every item has its result but whose last
item's server died before it ended the batch. Each item's result is written in the transaction
that settles or releases its hold, so an item whose hold was settled has its result and is never
run twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Protocol

from sqlalchemy import Connection

from flashbulb.billing import ledger
from flashbulb.engine.types import Caller, Cancelled, ImageRequest, JobContext
from flashbulb.errors import ErrorKind, FlashbulbError
from flashbulb.gateway.gateway import Gateway, Served
from flashbulb.jobs import queue
from flashbulb.jobs.files import FileStore

log = logging.getLogger("flashbulb.batch")

BATCH_PRIORITY = 1  # ImageRequest.priority: live traffic is 0 and runs first
POLL_S = 2.0  # a safety net: submissions and cancels wake the runner at once
FILE_SWEEP_S = 600.0
OVERLOADED_BACKOFF_S = 1.0  # live traffic has filled the model's queue: this slot waits before the next item


class ItemCodec(Protocol):
    """The wire format of a batch item: its stored request in, its response and errors out."""

    def request(self, payload: str, *, model: str, caller: Caller, request_id: str) -> ImageRequest: ...

    def response(self, request: ImageRequest, served: Served) -> dict: ...

    def error(self, error: FlashbulbError) -> dict: ...


def responses_file_name(batch_id: str) -> str:
    # Fixed per batch: a finalization redone after a crash replaces the file instead of leaving two.
    return f"batch-{batch_id}"


class BatchRunner:
    def __init__(self, gateway: Gateway, codec: ItemCodec, files: FileStore):
        self.gateway = gateway
        self.codec = codec
        self.files = files
        self.db = gateway.db
        self.settings = gateway.settings
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task] = set()
        self._end_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []
        # Who runs an item: no two live servers share a host and port, and a server restarted on its
        # own port takes back at once what its previous run left.
        self.owner = f"{socket.gethostname()}:{self.settings.port}"[:64]
        registry = gateway.engine.registry
        self.models = [name for name in registry.entries if registry.installed_name(name)]

    # ---- life cycle ----

    async def start(self) -> None:
        await self._recover(own=True)
        self._tasks = [
            asyncio.create_task(self._loop()),
            asyncio.create_task(self._sweep_files()),
            asyncio.create_task(self._heartbeat()),
        ]

    async def stop(self) -> None:
        """Stop claiming; items still running are released and put back (they run after the next start)."""
        for task in [*self._tasks, *self._in_flight]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._in_flight, return_exceptions=True)

    def wake(self) -> None:
        self._wake.set()

    async def _recover(self, own: bool = False) -> None:
        recovered = await asyncio.to_thread(self.recover, own)
        if recovered:
            log.warning("recovered %d batch requests left running by a stopped server; they run again", recovered)
            self._wake.set()
        if recovered or own:
            for batch_id in await asyncio.to_thread(queue.open_batches, self.db):
                await self._maybe_end(batch_id)  # a batch whose last item finished just before a crash

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.batch_lease_s / 3)
            try:
                await asyncio.to_thread(queue.renew_leases, self.db, self.owner, self.settings.batch_lease_s)
                await self._recover()
                # Ended here, or it would stay running while another server lives (it is ended at
                # a start, and the one that ran its last item may never start again).
                for batch_id in await asyncio.to_thread(queue.unended, self.db, self.settings.batch_lease_s):
                    await self._maybe_end(batch_id)
            except Exception:  # a database hiccup must not stop the heartbeat for good
                log.exception("renewing batch leases failed")

    def recover(self, own: bool = False) -> int:
        """Release the open hold of every item whose server died (its lease expired; with `own`, also
        those this server's previous run left), and put the item back. (An item whose hold was
        settled is not among them: it got its result in that transaction.)"""
        items = queue.interrupted(self.db, owner=self.owner if own else None)
        for item in items:
            usage = ledger.Usage(status="interrupted", error="the server stopped while this batch request ran")
            requeue = queue.requeue(item, self.settings.batch_max_attempts)
            if not ledger.close_hold(self.db, item.request_id, 0, usage, also=requeue):
                queue.requeue_now(self.db, item, self.settings.batch_max_attempts)  # killed before its hold was taken
        return len(items)

    # ---- the loop ----

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                free = self.settings.batch_max_in_flight - len(self._in_flight)
                claimed = (
                    await asyncio.to_thread(
                        queue.claim, self.db, free, owner=self.owner, lease_s=self.settings.batch_lease_s, models=self.models
                    )
                    if free > 0
                    else []
                )
                for item in claimed:
                    task = asyncio.create_task(self._run(item))
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
            except Exception:  # a database hiccup must not stop batches for good
                log.exception("claiming batch requests failed")
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waker, *self._in_flight}, timeout=POLL_S, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waker.cancel()

    async def _sweep_files(self) -> None:
        while True:
            try:
                if removed := await asyncio.to_thread(self.files.sweep_expired):
                    log.info("deleted %d expired files", removed)
            except Exception:
                log.exception("file sweep failed")
            await asyncio.sleep(FILE_SWEEP_S)

    async def _run(self, item: queue.Claimed) -> None:
        try:
            await self._run_item(item)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("batch request %s failed unexpectedly; it runs again", item.request_id)
            await asyncio.to_thread(self._release_and_requeue, item)
        await self._maybe_end(item.batch_id)
        self._wake.set()  # a slot is free

    async def _run_item(self, item: queue.Claimed) -> None:
        caller = Caller(account_id=item.account_id, account_name=item.account_name, key_id=item.key_id, is_admin=False)
        discount = self.settings.batch_discount_percent
        try:
            request = await asyncio.to_thread(
                self.codec.request, item.request, model=item.model, caller=caller, request_id=item.request_id
            )
            request.priority = BATCH_PRIORITY
            await self.gateway.reserve(request, discount_percent=discount)
        except FlashbulbError as error:
            if error.kind == ErrorKind.OVERLOADED:  # live calls hold the server's pixels: not the item's fault
                await asyncio.to_thread(queue.requeue_now, self.db, item, None)
                await asyncio.sleep(OVERLOADED_BACKOFF_S)
                return
            # A bad request, or out of credits: this item's error, not the batch's.
            await asyncio.to_thread(queue.finish_now, self.db, item, queue.FAILED, self._error(error))
            return
        recorder = _Recorder(self, item, request)
        try:
            await self.gateway.fulfil(request, JobContext(), discount_percent=discount, record=recorder)
        except queue.ItemSuperseded:  # someone else finished or requeued it: this run's hold is released
            usage = ledger.Usage(status="error", error="the batch request was taken over by another run")
            await asyncio.to_thread(ledger.close_hold, self.db, item.request_id, 0, usage)
            return
        except FlashbulbError as error:  # recorded with the release of the hold
            if error.kind == ErrorKind.OVERLOADED:
                await asyncio.sleep(OVERLOADED_BACKOFF_S)
        except Cancelled:
            pass  # recorded with the release of the hold
        if not recorder.committed:  # the hold had been closed already (it expired): run it again
            await asyncio.to_thread(queue.requeue_now, self.db, item, self.settings.batch_max_attempts)

    def _release_and_requeue(self, item: queue.Claimed) -> None:
        usage = ledger.Usage(status="error", error="the batch runner failed on this request")
        requeue = queue.requeue(item, self.settings.batch_max_attempts)
        if not ledger.close_hold(self.db, item.request_id, 0, usage, also=requeue):
            queue.requeue_now(self.db, item, self.settings.batch_max_attempts)

    def _error(self, error: FlashbulbError) -> str:
        return json.dumps({"error": self.codec.error(error)}, separators=(",", ":"))

    # ---- the end of a batch ----

    async def end_if_done(self, batch_id: str) -> None:
        """Make the batch final if every item has its result (after a cancel, say)."""
        await self._maybe_end(batch_id)

    async def _maybe_end(self, batch_id: str) -> None:
        async with self._end_lock:  # two last items finishing together end the batch once
            try:
                await asyncio.to_thread(self._end, batch_id)
            except Exception:
                log.exception("could not finish batches/%s; it is tried again at the next start", batch_id)

    def _end(self, batch_id: str) -> None:
        batch = queue.finalizable(self.db, batch_id)
        if batch is None:
            return
        if batch.input_file and not batch.deleted:
            name = responses_file_name(batch.id)
            self.files.write_generated(
                batch.account_id,
                name,
                display_name=f"responses of batches/{batch.id}",
                mime_type="application/jsonl",
                lines=_jsonl(self.db, batch.id),
                commit=lambda conn: queue.end(conn, batch, f"files/{name}"),
            )
        else:
            with self.db.begin() as conn:
                queue.end(conn, batch, None)
        log.info("batches/%s ended: %d succeeded, %d failed", batch.id, batch.stats.succeeded, batch.stats.failed)


def _jsonl(db, batch_id: str) -> Iterator[bytes]:
    """{"key": ..., "response": ...} or {"key": ..., "error": ...} per line, in input order."""
    for key, _labels, result in queue.results(db, batch_id):
        yield b'{"key":' + json.dumps(key).encode() + b"," + result[1:].encode() + b"\n"


class _Recorder:
    """Turns how an item's run ended into the statements committed with its hold's settlement."""

    def __init__(self, runner: BatchRunner, item: queue.Claimed, request: ImageRequest):
        self.runner = runner
        self.item = item
        self.request = request
        self.committed = False

    def __call__(self, outcome: Served | BaseException) -> Callable[[Connection], None]:
        max_attempts = self.runner.settings.batch_max_attempts
        if isinstance(outcome, Served):
            response = self.runner.codec.response(self.request, outcome)  # PNG encoding: in a thread, before the transaction
            statements = queue.finish(self.item, queue.SUCCEEDED, json.dumps({"response": response}, separators=(",", ":")))
        elif isinstance(outcome, FlashbulbError) and outcome.kind == ErrorKind.OVERLOADED:
            statements = queue.requeue(self.item, None)  # live traffic came first: not the item's fault
        elif isinstance(outcome, FlashbulbError) and outcome.kind in (ErrorKind.UNAVAILABLE, ErrorKind.OUT_OF_MEMORY):
            # Its worker died or ran out of memory: a few more tries, then it fails (a request that
            # kills workers is refused by the engine's poison check before it runs out of tries).
            statements = queue.requeue(self.item, max_attempts)
        elif isinstance(outcome, FlashbulbError):
            statements = queue.finish(self.item, queue.FAILED, self.runner._error(outcome))
        else:  # the server is stopping: it runs again after the next start
            statements = queue.requeue(self.item, max_attempts)

        def apply(conn: Connection) -> None:
            statements(conn)
            self.committed = True

        return apply
