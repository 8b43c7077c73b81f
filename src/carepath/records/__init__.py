"""Reading the patients and events files into validated, immutable records.

No Prefect here: `carepath plan` reads records without starting any runtime.
"""

from carepath.records.judge import MAX_LINE_BYTES
from carepath.records.readers import iter_event_lines, read_events, read_patients
from carepath.records.types import Event, Patient, RecordsFileError, Rejection

__all__ = [
    "MAX_LINE_BYTES",
    "Event",
    "Patient",
    "RecordsFileError",
    "Rejection",
    "iter_event_lines",
    "read_events",
    "read_patients",
]
