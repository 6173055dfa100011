"""`hotline hooks secret|list|retry`: a new signing secret, and the outbox of webhook deliveries read
(and sent again) while the server runs."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

STATUSES = ("pending", "failed", "delivered")  # app/records/outbox.py's; kept here: `--help` stays light


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hooks = sub.add_parser(
        "hooks",
        help="webhooks: make a secret, list deliveries, send failed ones again",
        description="Webhooks (config/hooks.yaml, docs/integrations.md): `secret` prints a new signing "
        "secret; `list` and `retry` read and change the deliveries in the records database (the data "
        "folder's SQLite file, or PostgreSQL: HOTLINE_DATABASE_URL) while the server runs.",
    )
    actions = hooks.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("secret", help="print a new secret (whsec_ + base64) for hooks.yaml")
    listing = actions.add_parser("list", help="deliveries, newest first")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--json", action="store_true", help="JSON (with each body) instead of a table")
    retry = actions.add_parser("retry", help="send deliveries again from now (a new 24 hours)")
    retry.add_argument("ids", nargs="*", type=int, metavar="ID", help="deliveries by id")
    retry.add_argument("--failed", action="store_true", help="every failed delivery")
    for p in (listing, retry):
        p.add_argument("--data", metavar="DIR", help="data folder (default: HOTLINE_DATA or data)")
        p.add_argument(
            "--database-url", metavar="URL", help="PostgreSQL instead (default: HOTLINE_DATABASE_URL)"
        )


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    if args.action == "secret":
        from app.hooks.signing import new_secret  # noqa: PLC0415

        out.write(new_secret() + "\n")
        return 0
    if args.action == "retry" and bool(args.failed) == bool(args.ids):
        print("hotline hooks retry: name the deliveries (ID ...) or --failed, not both", file=sys.stderr)
        return 2
    from app.records.columns import table  # noqa: PLC0415
    from app.records.commands import open_records, records_target  # noqa: PLC0415
    from app.records.dialects import DatabaseError, DatabaseErrors, one_line  # noqa: PLC0415
    from app.records.outbox import list_deliveries, retry  # noqa: PLC0415

    target = records_target(args.database_url, args.data)
    try:
        db = open_records(target, write=args.action == "retry")
    except DatabaseError as exc:
        print(f"hotline hooks: {exc}", file=sys.stderr)
        return 1
    try:
        if args.action == "retry":
            done = retry(db, None if args.failed else args.ids, time.time())
            out.write(f"{done} deliver{'y' if done == 1 else 'ies'} to send again\n")
            return 0 if done or args.failed else 1
        rows = list_deliveries(db, args.status, args.limit, with_body=args.json)
        if args.json:
            import json  # noqa: PLC0415

            out.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
        else:
            table(
                ["ID", "CREATED", "WEBHOOK", "EVENT", "CALL", "STATUS", "ATTEMPTS", "LAST"],
                [_row(r) for r in rows],
                out,
            )
        return 0
    except DatabaseErrors as exc:
        print(f"hotline hooks: {db.where}: {one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        db.close()


def _row(r: dict[str, Any]) -> list[str]:
    from app.records.commands import short_time  # noqa: PLC0415 - loaded by run() already

    last = r["last_error"] or (str(r["last_status"]) if r["last_status"] is not None else "")
    return [
        str(r["id"]),
        short_time(r["created"]),
        r["webhook"],
        r["type"],
        r["call_id"],
        r["status"] + (f" (next {r['next_attempt'][11:19]})" if r["next_attempt"] else ""),
        str(r["attempts"]),
        last,
    ]
