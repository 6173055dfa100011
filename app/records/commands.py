"""`hotline tickets …`, `hotline calls …` and `hotline report` (report.py): the records, read while
the server runs (SQLite's WAL readers, or PostgreSQL).

Readable tables by default, `--json` for programs (README.md, "Tickets and call transcripts"). An
unknown id exits 1 with one line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from app.records import database as dbm
from app.records.columns import table
from app.records.columns import width as _width
from app.records.dialects import AnyDb, DatabaseError, DatabaseErrors, is_postgres, one_line

MESSAGE_SHOWN = 40  # characters of a message in the list


def _cut(text: str, width: int) -> str:
    out, used = "", 0
    for ch in text:
        w = _width(ch)
        if used + w > width - 1:
            return out + "…"
        out += ch
        used += w
    return out


def records_target(database_url: str | None, data: str | None) -> Path | str:
    """The records a command reads (`hotline tickets|calls|report|hooks`): `--database-url`, else
    `--data`, else the server's own (HOTLINE_DATABASE_URL, else HOTLINE_DATA)."""
    if database_url:
        return database_url
    if data:
        return Path(data)
    from app.settings import load_settings  # noqa: PLC0415 - only when neither flag is given

    settings = load_settings()
    return settings.database_url or settings.data


def open_records(target: Path | str, write: bool = False) -> AnyDb:
    """The database of the data folder `target`, or the PostgreSQL database at the URL `target`."""
    where = target if is_postgres(target) else Path(target) / dbm.FILE
    return dbm.connect(where, create=False, readonly=not write)


def short_time(iso: str | None) -> str:
    """An ISO time as the tables show it: to the second, a space for the T."""
    return (iso or "")[:19].replace("T", " ")


def run(command: str, action: str, args: Any, target: Path | str, out: TextIO = sys.stdout) -> int:
    try:
        db = open_records(target, write=action == "close")
    except DatabaseError as exc:
        print(f"hotline {command}: {exc}", file=sys.stderr)
        return 1
    try:
        if command == "report":
            from app.records import report  # noqa: PLC0415 - loaded only for `hotline report`

            return report.run(db, args, args.levels, args.names, out, lambda: open_records(target))
        return _run(db, command, action, args, out)
    except DatabaseErrors as exc:
        print(f"hotline {command}: {db.where}: {one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        db.close()


def _dump(out: TextIO, value: Any) -> None:
    out.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def _absent(command: str, what: str, key: str) -> int:
    print(f"hotline {command}: no {what} {key}", file=sys.stderr)
    return 1


def _run(db: AnyDb, command: str, action: str, args: Any, out: TextIO) -> int:
    as_json = getattr(args, "json", False)
    if command == "tickets" and action == "list":
        tickets = dbm.list_tickets(db, args.status, args.limit)
        if as_json:
            _dump(out, tickets)
        else:
            rows = [
                [
                    t["id"],
                    short_time(t["created"]),
                    t["status"],
                    t["queue"] or "",
                    t["callback"] or "",
                    _cut(t["message"], MESSAGE_SHOWN),
                ]
                for t in tickets
            ]
            table(["ID", "CREATED", "STATUS", "QUEUE", "CALLBACK", "MESSAGE"], rows, out)
        return 0
    if command == "tickets" and action == "show":
        ticket = dbm.get_ticket(db, args.id)
        if ticket is None:
            return _absent(command, "ticket", args.id)
        if as_json:
            _dump(out, ticket)
        else:
            for key in ("id", "created", "status", "session_id", "caller", "queue", "callback", "message"):
                out.write(f"{key + ':':12}{ticket[key] if ticket[key] is not None else ''}\n")
            for name, value in ticket["vars"].items():
                shown = json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value
                out.write(f"{'var ' + name + ':':12}{shown}\n")
            if ticket["status"] == "closed":
                out.write(
                    f"{'closed:':12}{ticket['closed']}{'  ' + ticket['note'] if ticket['note'] else ''}\n"
                )
        return 0
    if command == "tickets" and action == "close":
        if not dbm.close_ticket(db, args.id, args.note, time.time()):
            return _absent(command, "ticket", args.id)
        out.write(f"closed {args.id}\n")
        return 0
    if command == "backup":
        try:
            dbm.backup(db, Path(args.file))
        except DatabaseError as exc:
            print(f"hotline backup: {exc}", file=sys.stderr)
            return 1
        out.write(f"backed up to {args.file}\n")
        return 0
    if command == "calls" and action == "list":
        calls = dbm.list_calls(db, args.limit)
        if as_json:
            _dump(out, calls)
        else:
            rows = [
                [c["session_id"], short_time(c["started"]), short_time(c["ended"]), c["caller"]]
                + [c[k] or "" for k in ("queue", "agent", "outcome", "disposition")]
                for c in calls
            ]
            headers = ["SESSION_ID", "STARTED", "ENDED", "CALLER", "QUEUE", "AGENT", "OUTCOME", "DISPOSITION"]
            table(headers, rows, out)
        return 0
    if command == "calls" and action == "show":
        call = dbm.get_call(db, args.session_id)
        if call is None:
            return _absent(command, "call", args.session_id)
        if as_json:
            _dump(out, call)
            return 0
        span = f"{short_time(call['started'])} to {short_time(call['ended']) or '(going on)'}"
        out.write(f"call {call['session_id']} from {call['caller']}, {span}\n")
        for line in call["lines"]:
            who = line["direction"] + (f" {line['agent']}" if "agent" in line else "")
            for i, text in enumerate(line["text"].splitlines() or [""]):
                lead = f"{line['time'][11:19]}  {who:12} {line['node'] or '':14}" if i == 0 else " " * 38
                out.write(f"{lead} {text}\n")
        if call["dropped"]:
            out.write(f"({call['dropped']} lines not kept)\n")
        for d in call["desk_calls"]:
            out.write(
                f"desk call: queue {d['queue']}, joined {short_time(d['joined'])}, "
                f"{d['outcome'] or 'going on'}"
                + (f" by {d['ended_by']}" if d["ended_by"] else "")
                + (f", agent {d['agent']}" if d["agent"] else "")
                + (f", waited {d['waited']} s" if d["waited"] is not None else "")
                + (f", talked {d['talked']} s" if d["talked"] is not None else "")
                + (f", disposition {d['disposition']}" if d["disposition"] else "")
                + (f", satisfaction {d['csat']}" if d["csat"] is not None else "")
                + "\n"
            )
        return 0
    raise AssertionError(f"{command} {action}")  # pragma: no cover - argparse allows no other
