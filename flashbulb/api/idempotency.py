"""Idempotency-Key: a retry of a POST gets the first call's answer instead of running (and paying) again.

A POST that carries the header is claimed in the database before it runs: one row per API key and
Idempotency-Key, so the claim is race-safe across processes. A 2xx answer is stored with the row and
replayed, byte for byte with `idempotent-replayed: true`, to every retry for `idempotency_ttl_s`.
The kept body is encrypted with a key derived from the caller's API key and Idempotency-Key, which
only a retry carries (the row holds a different hash of them): an answer that minted a secret (a
new API key, a credit code) is never readable at rest.
Any other answer gives the claim back: nothing was charged, so a retry runs again. A retry while the
first call still runs gets 409; the same key with a different request gets 400.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flashbulb.api.errors import error_response
from flashbulb.api.serving import api_key_of
from flashbulb.errors import ErrorKind, FlashbulbError
from flashbulb.gateway import accounts
from flashbulb.store.tables import IdempotentCall, utcnow

log = logging.getLogger("flashbulb.idempotency")
MAX_KEY_LENGTH = 255
REPLAYED = (b"idempotent-replayed", b"true")


class Idempotency:
    def __init__(self, app: ASGIApp, db: Engine, *, ttl_s: float, run_lease_s: float):
        self.app = app
        self.db = db
        self.ttl_s = ttl_s
        self.run_lease_s = run_lease_s  # a claim whose run crashed is free again after this long

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        idempotency_key = Headers(scope=scope).get("idempotency-key") if scope["type"] == "http" else None
        api_key = api_key_of(HTTPConnection(scope)) if idempotency_key is not None else None
        if scope.get("method") != "POST" or idempotency_key is None or api_key is None:
            await self.app(scope, receive, send)  # (no key: the route itself refuses the call)
            return
        connection = HTTPConnection(scope)
        try:
            if not 0 < len(idempotency_key) <= MAX_KEY_LENGTH:
                raise FlashbulbError(ErrorKind.INVALID_ARGUMENT, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
            body = await _read_body(receive)
        except FlashbulbError as error:  # (an oversized body, from the size limit around us)
            await error_response(error, connection)(scope, receive, send)
            return
        key_hash = _sha256(api_key.encode(), b"\0", idempotency_key.encode())
        sealer = _sealer(api_key, idempotency_key)
        fingerprint = _fingerprint(scope, body)
        claim = uuid.uuid4().hex
        found = await asyncio.to_thread(self._claim, key_hash, fingerprint, claim)
        if found is not None:
            await self._answer_retry(found, fingerprint, sealer, connection, scope, receive, send)
            return

        answer: dict = {"status": 0, "headers": [], "chunks": []}
        replayed_body = False
        stored = False

        async def receive_body() -> Message:
            nonlocal replayed_body
            if not replayed_body:
                replayed_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # (then only http.disconnect: the route watches for it)

        async def keep_answer(message: Message) -> None:
            nonlocal stored
            if message["type"] == "http.response.start":
                answer["status"], answer["headers"] = message["status"], list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                answer["chunks"].append(message.get("body", b""))
                if not message.get("more_body", False):
                    # Kept before the caller has its last byte: a retry sent the moment the answer
                    # arrived found it "still running" (409) on PostgreSQL, 1 run in ~10. (If it
                    # can't be kept now, the answer still goes out; the `finally` below tries again.)
                    try:
                        await asyncio.shield(asyncio.to_thread(self._finish, key_hash, claim, answer, sealer))
                        stored = True
                    except Exception:
                        log.exception("keeping an idempotent answer failed")
            await send(message)

        try:
            await self.app(scope, receive_body, keep_answer)
        finally:
            if not stored:  # Shielded: a cancelled request must still store its answer or give its claim back.
                await asyncio.shield(asyncio.to_thread(self._finish, key_hash, claim, answer, sealer))

    async def _answer_retry(
        self,
        found: Row,
        fingerprint: str,
        sealer: AESGCM,
        connection: HTTPConnection,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        if found.fingerprint != fingerprint:
            error = FlashbulbError(
                ErrorKind.INVALID_ARGUMENT,
                "this Idempotency-Key was used for a different request; use a new key for a new request",
            )
            await error_response(error, connection)(scope, receive, send)
        elif found.state != "done":
            error = FlashbulbError(
                ErrorKind.ALREADY_EXISTS,
                "a request with this Idempotency-Key is still running; retry when it has finished",
                retry_after_s=5,
            )
            await error_response(error, connection)(scope, receive, send)
        else:
            try:  # a key revoked since the first call gets no replay of it
                await asyncio.to_thread(accounts.authenticate, self.db, api_key_of(connection))
            except FlashbulbError as refused:
                await error_response(refused, connection)(scope, receive, send)
                return
            try:
                body = _open(sealer, found.body)
            except InvalidTag:  # kept by an older version, in the clear: not replayed
                error = FlashbulbError(ErrorKind.ALREADY_EXISTS, "this Idempotency-Key was used before; use a new one")
                await error_response(error, connection)(scope, receive, send)
                return
            headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in found.headers or []]
            await send({"type": "http.response.start", "status": found.status_code, "headers": [*headers, REPLAYED]})
            await send({"type": "http.response.body", "body": body})

    # ---- the table (called off the event loop) ----

    def _claim(self, key_hash: str, fingerprint: str, claim: str) -> Row | None:
        """None when this run now holds the key; else the row someone else holds (running or done)."""
        now = utcnow()
        running = {
            "fingerprint": fingerprint,
            "claim": claim,
            "state": "running",
            "status_code": None,
            "headers": None,
            "body": None,
            "expires_at": now + dt.timedelta(seconds=self.run_lease_s),
        }
        with self.db.begin() as conn:
            try:
                with conn.begin_nested():
                    conn.execute(insert(IdempotentCall).values(key_hash=key_hash, **running))
                return None
            except IntegrityError:
                pass
            found = conn.execute(select(*IdempotentCall.__table__.c).where(IdempotentCall.key_hash == key_hash)).one()
            if found.expires_at > now:
                return found
            # An expired answer, or the claim of a run that crashed: take it over (one taker wins).
            taken = conn.execute(
                update(IdempotentCall)
                .where(IdempotentCall.key_hash == key_hash, IdempotentCall.claim == found.claim)
                .values(**running)
            ).rowcount
            return None if taken == 1 else found

    def _finish(self, key_hash: str, claim: str, answer: dict, sealer: AESGCM) -> None:
        """Keep a 2xx answer for retries; any other outcome gives the key back (nothing was charged)."""
        mine = (IdempotentCall.key_hash == key_hash, IdempotentCall.claim == claim)
        with self.db.begin() as conn:
            if 200 <= answer["status"] < 300:
                headers = [[name.decode("latin-1"), value.decode("latin-1")] for name, value in answer["headers"]]
                conn.execute(
                    update(IdempotentCall)
                    .where(*mine)
                    .values(
                        state="done",
                        status_code=answer["status"],
                        headers=headers,
                        body=_seal(sealer, b"".join(answer["chunks"])),
                        expires_at=utcnow() + dt.timedelta(seconds=self.ttl_s),
                    )
                )
            else:
                conn.execute(delete(IdempotentCall).where(*mine))


def sweep_expired(db: Engine) -> int:
    """Forget answers past their time (and claims of runs that crashed). Returns how many."""
    with db.begin() as conn:
        return conn.execute(delete(IdempotentCall).where(IdempotentCall.expires_at < utcnow())).rowcount


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise FlashbulbError(ErrorKind.CANCELLED, "the client closed the connection")
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _fingerprint(scope: Scope, body: bytes) -> str:
    """What makes two calls the same call. A multipart body's boundary is random per send (the
    openai SDK's retries included), so it is left out."""
    content_type = Headers(scope=scope).get("content-type", "")
    boundary = content_type.partition("boundary=")[2].split(";")[0].strip().strip('"')
    if boundary:
        body = body.replace(boundary.encode("latin-1"), b"")
    return _sha256(scope["method"].encode(), scope["path"].encode(), b"?", scope["query_string"], b"\0", body)


def _sealer(api_key: str, idempotency_key: str) -> AESGCM:
    return AESGCM(hashlib.sha256(b"flashbulb idempotent body\0" + api_key.encode() + b"\0" + idempotency_key.encode()).digest())


def _seal(sealer: AESGCM, body: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + sealer.encrypt(nonce, body, None)


def _open(sealer: AESGCM, sealed: bytes | None) -> bytes:
    return sealer.decrypt(sealed[:12], sealed[12:], None) if sealed else b""


def _sha256(*parts: bytes) -> str:
    return hashlib.sha256(b"".join(parts)).hexdigest()
