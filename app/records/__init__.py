"""Durable records: tickets callers leave and the transcript of every call, in SQLite or PostgreSQL.

database.py: opening, the migrations and every query, written once for both (used by the server's
thread and the CLI). dialects.py: what differs between the two, and the connection the queries use.
recorder.py: the server's writer thread and the non-blocking interface the sessions use.
commands.py: `hotline tickets|calls|backup`. report.py: `hotline report` (docs/reports.md).
"""

from app.records.database import NewTicket
from app.records.dialects import DatabaseError
from app.records.recorder import Recorder, RecordError, Storage

__all__ = ["DatabaseError", "NewTicket", "RecordError", "Recorder", "Storage"]
