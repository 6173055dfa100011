"""The webhooks' outbox: the table `webhook_deliveries` (database.MIGRATIONS) and every query on it.

How this works: an event is written as one row per webhook that takes its type, by the recorder's
thread, inside the transaction of the record it reports (the ticket, the end of a desk call, the
score, the booked callback): committed together, so a `kill -9` after a caller heard a ticket number
cannot lose the event, and a rolled-back record makes none. The body is built and stored then, so
every attempt sends the same bytes under the same `event_id` (the `webhook-id` header).

The delivery worker (app/net/hooks.py) runs `exchange` in one transaction per round: it records the
outcomes of the attempts that finished, then claims up to `limit` due rows of a webhook by giving them
a lease (a row leased is being sent by someone; a lease that lapsed, its sender dead, is claimed
again). A row is due when its `next_at` has come and no earlier row of the same webhook and call is
still pending: a call's events go out one at a time, in order. With PostgreSQL, replicas claim at
once: `FOR UPDATE SKIP LOCKED` makes each skip the rows another is claiming, and the lease keeps them
from claiming what another is sending, so each event is sent by one replica.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from app import zone
from app.records import database as dbm
from app.records.dialects import AnyDb

EVENTS: Final = ("ticket.created", "call.completed", "survey.answered", "callback.booked")
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
STATUSES: Final = (PENDING, DELIVERED, FAILED)

Subscriptions = Mapping[str, tuple[str, ...]]  # event type -> the webhooks that take it


def new_event_id() -> str:
    """A new event's id: `msg_` and 32 hex digits (unique; receivers de-duplicate on it)."""
    return "msg_" + uuid.uuid4().hex


def encode(event: str, now: float, data: Any) -> str:
    """The body of an event as sent: {"type", "timestamp" (UTC, ISO 8601), "data"}, compact JSON."""
    stamp = dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    body = {"type": event, "timestamp": stamp, "data": data}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str)


def add(db: AnyDb, webhooks: Sequence[str], event: str, call_id: str, data: Any, now: float) -> int:
    """One event for `webhooks` (inside the caller's transaction); the rows added."""
    if not webhooks:
        return 0
    body, event_id = encode(event, now, data), new_event_id()
    db.executemany(
        "INSERT INTO webhook_deliveries (event_id, webhook, type, call_id, created, body, since, next_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(event_id, name, event, call_id, now, body, now, now) for name in webhooks],
    )
    return len(webhooks)


def tickets_created(db: AnyDb, subs: Subscriptions, ids: Sequence[str], now: float) -> int:
    """`ticket.created` for each new ticket, as `hotline tickets show --json` shows it."""
    webhooks = subs.get("ticket.created", ())
    added = 0
    for ticket_id in ids if webhooks else ():
        ticket = dbm.get_ticket(db, ticket_id)
        if ticket is not None:
            added += add(db, webhooks, "ticket.created", ticket["session_id"], ticket, now)
    return added


def desk_event(db: AnyDb, subs: Subscriptions, event: str, call_id: str, now: float) -> int:
    """`call.completed` (the desk call record at its end), `survey.answered` ({"score", "call"}) or
    `callback.booked` (the record with the number), once the record is written."""
    webhooks = subs.get(event, ())
    if not webhooks:
        return 0
    call = dbm.latest_desk_call(db, call_id)
    if call is None:
        return 0
    data = {"score": call["csat"], "call": call} if event == "survey.answered" else call
    return add(db, webhooks, event, call_id, data, now)


# ---- the delivery worker's side -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Due:
    """A delivery claimed for sending."""

    id: int
    event_id: str
    type: str
    body: str
    attempts: int  # made before this one
    since: float  # retried until since + the give-up time


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended: `status` pending (retry at `next_at`), delivered or failed."""

    id: int
    status: str
    next_at: float
    http_status: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Round:
    claimed: list[Due]
    next_at: float | None  # the earliest later retry of this webhook (None: none waiting)
    pending: int | None  # this webhook's pending rows (None: not counted this round)


def exchange(
    db: AnyDb,
    webhook: str,
    outcomes: Sequence[Outcome],
    limit: int,
    now: float,
    lease: float,
    count: bool = False,
) -> Round:
    """Record `outcomes`, then claim up to `limit` due deliveries of `webhook` for `lease` seconds;
    one transaction (a commit that may be lost with the machine: at worst an event is sent again)."""
    db.begin(durable=False, writing=True)
    try:
        settle(db, outcomes, now)
        claimed = claim(db, webhook, limit, now, lease) if limit > 0 else []
        row = db.execute(
            "SELECT min(next_at) FROM webhook_deliveries WHERE webhook = ? AND status = 'pending'"
            " AND next_at > ?",
            (webhook, now),
        ).fetchone()
        pending = None
        if count:
            pending = int(
                db.execute(
                    "SELECT count(*) FROM webhook_deliveries WHERE webhook = ? AND status = 'pending'",
                    (webhook,),
                ).fetchone()[0]
            )
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return Round(claimed, row[0], pending)


def settle(db: AnyDb, outcomes: Sequence[Outcome], now: float) -> None:
    db.executemany(
        "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, next_at = ?, lease_until = NULL,"
        " last_status = ?, last_error = ?, done_at = ? WHERE id = ? AND status = 'pending'",
        [
            (o.status, o.next_at, o.http_status, o.error, None if o.status == PENDING else now, o.id)
            for o in outcomes
        ],
    )


def claim(db: AnyDb, webhook: str, limit: int, now: float, lease: float) -> list[Due]:
    # only fixed text is joined (the dialect's FOR UPDATE clause): the values go as parameters
    sql = (
        "SELECT id, event_id, type, body, attempts, since FROM webhook_deliveries d"
        " WHERE webhook = ? AND status = 'pending' AND next_at <= ?"
        " AND (lease_until IS NULL OR lease_until <= ?)"
        " AND d.id = (SELECT min(e.id) FROM webhook_deliveries e WHERE e.webhook = d.webhook"
        " AND e.call_id = d.call_id AND e.status = 'pending')"
        " ORDER BY id LIMIT ?"
    )
    rows = db.execute(sql + db.dialect.skip_locked, (webhook, now, now, limit)).fetchall()
    due = [Due(int(r[0]), r[1], r[2], r[3], int(r[4]), float(r[5])) for r in rows]
    if due:
        db.executemany(
            "UPDATE webhook_deliveries SET lease_until = ? WHERE id = ?", [(now + lease, d.id) for d in due]
        )
    return due


def release(db: AnyDb, ids: Sequence[int]) -> None:
    """Give up the leases of deliveries this process was sending (at shutdown): due again at once."""
    db.executemany(
        "UPDATE webhook_deliveries SET lease_until = NULL WHERE id = ? AND status = 'pending'",
        [(i,) for i in ids],
    )


def release_leases(db: AnyDb) -> int:
    """Forget every lease (SQLite at start: the one server that could hold one is this one)."""
    return int(
        db.execute("UPDATE webhook_deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL").rowcount
    )


def purge(db: AnyDb, before: float) -> int:
    """Delete deliveries delivered before `before` (with the transcripts' retention); failed and
    pending ones stay. The rows deleted."""
    return int(
        db.execute(
            "DELETE FROM webhook_deliveries WHERE status = 'delivered' AND done_at < ?", (before,)
        ).rowcount
    )


# ---- the CLI's side --------------------------------------------------------------------------------


def _iso(t: float | None) -> str | None:
    return None if t is None else zone.iso(t)


def _delivery(row: dict[str, Any], with_body: bool) -> dict[str, Any]:
    out = {
        "id": row["id"],
        "event_id": row["event_id"],
        "webhook": row["webhook"],
        "type": row["type"],
        "call_id": row["call_id"],
        "status": row["status"],
        "attempts": row["attempts"],
        "created": _iso(row["created"]),
        "next_attempt": _iso(row["next_at"]) if row["status"] == PENDING else None,
        "last_status": row["last_status"],
        "last_error": row["last_error"],
        "done": _iso(row["done_at"]),
    }
    if with_body:
        out["body"] = json.loads(row["body"])
    return out


def list_deliveries(
    db: AnyDb, status: str | None = None, limit: int = 50, with_body: bool = False
) -> list[dict[str, Any]]:
    """Newest first (`hotline hooks list`)."""
    if status is None:
        rows = db.rows("SELECT * FROM webhook_deliveries ORDER BY id DESC LIMIT ?", (limit,))
    else:
        rows = db.rows(
            "SELECT * FROM webhook_deliveries WHERE status = ? ORDER BY id DESC LIMIT ?", (status, limit)
        )
    return [_delivery(r, with_body) for r in rows]


def retry(db: AnyDb, ids: Sequence[int] | None, now: float) -> int:
    """Send these deliveries again (None: every failed one) from now, with a new 24 hours; how many."""
    sql = (
        "UPDATE webhook_deliveries SET status = 'pending', next_at = ?, since = ?, lease_until = NULL,"
        " done_at = NULL WHERE "
    )
    if ids is None:
        return int(db.execute(sql + "status = 'failed'", (now, now)).rowcount)
    done = 0
    for delivery_id in ids:
        done += int(db.execute(sql + "id = ?", (now, now, delivery_id)).rowcount)
    return done
