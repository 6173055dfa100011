"""Durable records: tickets callers leave and the transcript of every call, in SQLite.

database.py: the file, its migrations and every query (used by the server's thread and the CLI).
recorder.py: the server's writer thread and the non-blocking interface the sessions use.
"""

from app.records.database import DatabaseError, NewTicket
from app.records.recorder import Recorder, RecordError, Storage

__all__ = ["DatabaseError", "NewTicket", "RecordError", "Recorder", "Storage"]
