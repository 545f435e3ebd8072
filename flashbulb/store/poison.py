"""The shared list of requests that killed model workers (the engine keeps its own copy in memory,
refreshed from here by the sweep, so checking a call costs no query)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from flashbulb.store.tables import PoisonRequest, utcnow

KEEP = dt.timedelta(days=7)  # a request that killed workers a week ago may run again (a fixed bug, a new build)


def record(db: Engine, fingerprints: list[str], model: str) -> None:
    """One more crash for each fingerprint."""
    now = utcnow()
    for fingerprint in fingerprints:
        with db.begin() as conn:
            counted = conn.execute(
                update(PoisonRequest)
                .where(PoisonRequest.fingerprint == fingerprint)
                .values(crashes=PoisonRequest.crashes + 1, last_at=now)
            ).rowcount
            if counted:
                continue
        try:
            with db.begin() as conn:
                conn.execute(insert(PoisonRequest).values(fingerprint=fingerprint, model=model, crashes=1, last_at=now))
        except IntegrityError:  # another server recorded its first crash meanwhile
            with db.begin() as conn:
                conn.execute(
                    update(PoisonRequest)
                    .where(PoisonRequest.fingerprint == fingerprint)
                    .values(crashes=PoisonRequest.crashes + 1, last_at=now)
                )


def counts(db: Engine) -> dict[str, int]:
    """Crashes per fingerprint, of the last KEEP."""
    with db.connect() as conn:
        rows = conn.execute(
            select(PoisonRequest.fingerprint, PoisonRequest.crashes).where(PoisonRequest.last_at >= utcnow() - KEEP)
        ).all()
    return {row.fingerprint: row.crashes for row in rows}
