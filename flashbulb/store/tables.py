"""The database tables. Money columns are integer micro-USD (1 USD = 1_000_000)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, Boolean, Date, DateTime, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from flashbulb.clock import clock


def utcnow() -> dt.datetime:
    """Naive UTC: SQLite keeps no time zone, so every timestamp is stored as naive UTC."""
    return clock.utcnow()


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # balance = sum of this account's ledger entries; held = sum of its open holds.
    balance_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    held_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # Referrals: this account's own code to hand out, and who referred it (set once). The commission
    # rate and its end are fixed when the referral is made, so a config change never alters them.
    referral_code: Mapped[str | None] = mapped_column(String(32), nullable=True, unique=True, index=True)
    referrer_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    commission_percent: Mapped[int] = mapped_column(Integer, default=0)
    commission_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings; the key itself is never stored
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    models: Mapped[list | None] = mapped_column(JSON, nullable=True)  # scope: model names it may call; None: all
    # Spending cap: spent (settled, net of refunds) + held may never pass cap_micros (None: no cap).
    cap_micros: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    spent_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    held_micros: Mapped[int] = mapped_column(BigInteger, default=0)


class Hold(Base):
    """Credit reserved for one request until it is settled or released (exactly once)."""

    __tablename__ = "holds"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    key_id: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200))
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), index=True)  # held | settled | released
    charged_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    # The unit prices quoted when the credit was held (micro-USD, after quality and discount): the
    # settlement charges these, whatever the price list says by then. None: a hold from before 0003.
    unit_small_micros: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    unit_standard_micros: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    unit_large_micros: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    unit_input_micros: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    input_images: Mapped[int | None] = mapped_column(Integer, nullable=True)
    refunded_micros: Mapped[int] = mapped_column(BigInteger, default=0)


class CreditCode(Base):
    """A redemption code worth `amount_micros`, used at most once (only its SHA-256 is stored)."""

    __tablename__ = "credit_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    redeemed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    redeemed_by: Mapped[int | None] = mapped_column(Integer, nullable=True)


class LedgerEntry(Base):
    """Append-only: every change of a balance is one row here."""

    __tablename__ = "ledger_entries"
    __table_args__ = (UniqueConstraint("kind", "request_id", name="uq_ledger_kind_request"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount_micros: Mapped[int] = mapped_column(BigInteger)  # + credit, - charge
    # grant | charge | redeem | refund | commission | clawback ((kind, request_id) is unique: each once)
    kind: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class UsageRecord(Base):
    __tablename__ = "usage_records"
    # Ids never reused (SQLite would give a deleted largest one again): /metrics sums records by id range.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    key_id: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(32))  # ok | no_image | blocked | error | cancelled | expired
    finish_reason: Mapped[str] = mapped_column(String(32), default="")
    input_images: Mapped[int] = mapped_column(Integer, default=0)
    input_pixels: Mapped[int] = mapped_column(BigInteger, default=0)
    output_images: Mapped[int] = mapped_column(Integer, default=0)
    output_pixels: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    charge_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    quality: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    replica: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # {"id", "host", "pid"} that ran it
    # The 32-bit watermark payload its images carry (flashbulb/provenance); None: not marked.
    watermark: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)


class BlobChunk(Base):
    """A piece of a blob kept in the database (`[storage] blobs = "database"`), so every server reads
    every upload, result file and image URL; a blob is its chunks in `seq` order."""

    __tablename__ = "blob_chunks"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)  # "files/<id>", "outputs/<name>"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class UsageDaily(Base):
    """Usage records rolled up by `flashbulb usage rollup`: one row per account, key, model, UTC day
    and status, with the totals of the detail rows it replaced (which are deleted)."""

    __tablename__ = "usage_daily"
    __table_args__ = (UniqueConstraint("account_id", "key_id", "model", "day", "status", name="uq_usage_daily"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    key_id: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200))
    day: Mapped[dt.date] = mapped_column(Date, index=True)
    status: Mapped[str] = mapped_column(String(32))
    calls: Mapped[int] = mapped_column(BigInteger, default=0)
    input_images: Mapped[int] = mapped_column(BigInteger, default=0)
    input_pixels: Mapped[int] = mapped_column(BigInteger, default=0)
    output_images: Mapped[int] = mapped_column(BigInteger, default=0)
    output_pixels: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_ms: Mapped[int] = mapped_column(BigInteger, default=0)  # the sum: mean = latency_ms / calls
    charge_micros: Mapped[int] = mapped_column(BigInteger, default=0)


class StoredFile(Base):
    """A file of the Files API: uploaded batch input (JSONL) or a batch's responses. Bytes live
    under <data dir>/files; the row says whose it is and whether it is complete."""

    __tablename__ = "files"
    __table_args__ = (UniqueConstraint("account_id", "name", name="uq_files_account_name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # made by the server; names the blob
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(40))  # `files/<name>` to its account, which may choose it
    display_name: Mapped[str] = mapped_column(String(512), default="")
    mime_type: Mapped[str] = mapped_column(String(200), default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)  # announced while uploading, exact once active
    sha256: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[str] = mapped_column(String(16))  # uploading | active
    source: Mapped[str] = mapped_column(String(16))  # uploaded | generated
    # The upload URL's secret (chunk requests carry no API key); only its hash is kept.
    upload_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)


class BatchJob(Base):
    """A batch of generateContent requests, run in the background at a discount."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    key_id: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200))
    display_name: Mapped[str] = mapped_column(String(512), default="")
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending | running | succeeded | failed | cancelled
    input_file: Mapped[str | None] = mapped_column(String(64), nullable=True)  # "files/..."; None: inline requests
    responses_file: Mapped[str | None] = mapped_column(String(64), nullable=True)  # "files/..." once done
    request_count: Mapped[int] = mapped_column(Integer)
    # Kept with each item's result (same transaction), so stats and "all done?" never scan the items.
    succeeded_count: Mapped[int] = mapped_column(Integer, default=0)
    failed_count: Mapped[int] = mapped_column(Integer, default=0)  # cancelled items included
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class BatchItem(Base):
    """One request of a batch. Its result is written in the transaction that settles its hold."""

    __tablename__ = "batch_items"

    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)  # input order, from 0
    key: Mapped[str] = mapped_column(Text, default="")  # the JSONL line's "key"
    labels: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # an inline request's "metadata"
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending | running | succeeded | failed | cancelled
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # part of the hold's request id: one hold per run
    request: Mapped[str | None] = mapped_column(Text, nullable=True)  # GenerateContentRequest JSON; dropped once done
    result: Mapped[str | None] = mapped_column(Text, nullable=True)  # {"response": ...} or {"error": ...}
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # While running: the server running it and until when; its heartbeat renews the lease. Only an
    # expired lease is taken over, so several servers on one database never take each other's work.
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class IdempotentCall(Base):
    """A POST sent with an Idempotency-Key: claimed while it runs, then its answer, kept for retries."""

    __tablename__ = "idempotent_calls"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the API key and the Idempotency-Key
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of the method, path and body: the same call?
    claim: Mapped[str] = mapped_column(String(32))  # the run that holds the row
    state: Mapped[str] = mapped_column(String(16))  # running | done
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    headers: Mapped[list | None] = mapped_column(JSON, nullable=True)  # [[name, value], ...] of the answer
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)  # a running claim's lease, or the answer's end


class PoisonRequest(Base):
    """A request that killed model workers, by its fingerprint (engine.fingerprint: model, prompt,
    options and the images' pixels), so every API server on this database refuses it once it has
    killed POISON_CRASHES of them, not each server after its own."""

    __tablename__ = "poison_requests"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(200))
    crashes: Mapped[int] = mapped_column(Integer, default=0)
    last_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
