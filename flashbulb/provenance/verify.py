"""Is this a flashbulb image, and which call made it? Its content credentials (if they survived) and
its watermark (which survives what strips them), checked against this server's usage records."""

from __future__ import annotations

import io

from PIL import Image
from sqlalchemy import Connection, Engine, func, select

from flashbulb.engine.imageio import decode_image
from flashbulb.engine.types import Caller
from flashbulb.provenance import credentials, watermark
from flashbulb.store.tables import UsageRecord

# The most a chance reading may match some recorded mark, per image checked. A reading is matched
# to the marks that differ from it only in its least sure bits: up to 12 of them (4,096 payloads of
# 2^32) while few calls are recorded (under ~100), fewer as more are (7 at 1,700 marks, 5 at 10,000,
# 2 at 100,000), so an image flashbulb didn't make is not claimed as more calls are. Measured, JPEG
# q80 copies of 44 marked photos (3 photos at 320 px): the wrong bits were among the 6 least sure
# in 40, the 10 least sure in all (8 missed 2 of them; the suite's shared server saw one such).
MAX_CHANCE_MATCH = 1e-4
MAX_DOUBTS = 12


def verify(data: bytes, *, db: Engine, caller: Caller | None, trust_anchor_pem: bytes, max_pixels: int) -> dict:
    """`caller` None: the operator, on this machine (sees every call). Raises 400 for a non-image."""
    image = decode_image(data, max_pixels=max_pixels, what="image")
    mime = credentials.MIME.get((Image.open(io.BytesIO(data)).format or "").lower().replace("jpg", "jpeg"))
    return {
        "c2pa": credentials.read(data, mime, trust_anchor_pem) if mime else None,
        "watermark": _trace(watermark.read(image), db, caller),
    }


def doubts_for(marks: int) -> int:
    """How many of a reading's least sure bits may be wrong for it to still be matched, with `marks`
    recorded: as many as keep the chance of matching somebody else's mark <= MAX_CHANCE_MATCH."""
    return next((k for k in range(MAX_DOUBTS, 0, -1) if marks * 2**k / 2**32 <= MAX_CHANCE_MATCH), 0)


def marks_recorded(conn: Connection) -> int:
    return conn.execute(select(func.count()).where(UsageRecord.watermark.is_not(None))).scalar_one()


def _trace(reading: watermark.Reading | None, db: Engine, caller: Caller | None) -> dict:
    if reading is None:
        return {"found": False, "why": f"images under {watermark.MIN_SIDE} px a side carry no watermark"}
    with db.connect() as conn:
        marked = marks_recorded(conn)
        candidates = reading.candidates(doubts_for(marked))
        rows = conn.execute(
            select(
                UsageRecord.request_id, UsageRecord.account_id, UsageRecord.model, UsageRecord.created_at, UsageRecord.watermark
            ).where(UsageRecord.watermark.in_(candidates))
        ).all()
    chance = round(marked * len(candidates) / 2**32, 9)
    answer: dict = {"found": bool(rows), "confidence": reading.confidence, "chance_match": chance}
    if not rows:
        return answer
    row = min(rows, key=lambda r: (bin(r.watermark ^ reading.payload).count("1"), -r.created_at.timestamp()))
    answer.update(bit_errors=bin(row.watermark ^ reading.payload).count("1"), model=row.model)
    if caller is None or caller.is_admin or caller.account_id == row.account_id:  # whose call it was is theirs to know
        answer.update(request_id=row.request_id, created=row.created_at.isoformat() + "Z")
    return answer
