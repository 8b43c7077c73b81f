"""The per-patient event store and the wake index (incremental sweeps).

- `event_feed`: per pathway, how far the events file was read (path, bytes, lines, and a
  fingerprint of what was read, so a replaced file is read again from its start);
- `event_lines`: every line read, raw, under its line number, with the patient ref and
  event id it names (indexed: a patient's lines, an id's lines);
- `event_shared_ids`: the (rare) event ids that lines of several patients use;
- `patient_wake`: per patient, when their plan next changes with no new event, what it
  was planned from, and the summary a sweep reports for them;
- `patient_dirty`: patients whose new lines were read but who were not yet re-planned;
- `patients_file`, `patient_lines`: the patients file as last read (its stamp) and where
  each patient's line is in it, so an event-triggered run reads one patient's line.

New tables only; an existing ledger's next sweep reads the events file from its start
and re-plans every patient once (it changes nothing that did not change).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _tables(metadata: sa.MetaData) -> list[sa.Table]:
    return [
        sa.Table(
            "event_feed", metadata,
            sa.Column("pathway", sa.String(200), primary_key=True),
            sa.Column("path", sa.String(4096), nullable=False),
            sa.Column("offset", sa.Integer, nullable=False),
            sa.Column("lines", sa.Integer, nullable=False),
            sa.Column("fingerprint", sa.String(64), nullable=False),
        ),
        sa.Table(
            "event_lines", metadata,
            sa.Column("pathway", sa.String(200), nullable=False),
            sa.Column("line", sa.Integer, nullable=False),
            sa.Column("patient", sa.String(200), nullable=True),
            sa.Column("event_id", sa.String(200), nullable=True),
            sa.Column("raw", sa.LargeBinary, nullable=False),
            sa.PrimaryKeyConstraint("pathway", "line", name="pk_event_lines"),
            sa.Index("ix_event_lines_patient", "pathway", "patient", "line"),
            sa.Index("ix_event_lines_event_id", "pathway", "event_id"),
        ),
        sa.Table(
            "event_shared_ids", metadata,
            sa.Column("pathway", sa.String(200), primary_key=True),
            sa.Column("event_id", sa.String(200), primary_key=True),
        ),
        sa.Table(
            "patient_wake", metadata,
            sa.Column("pathway", sa.String(200), nullable=False),
            sa.Column("patient", sa.String(200), nullable=False),
            sa.Column("wake", sa.String(40), nullable=True),
            sa.Column("as_of", sa.String(40), nullable=False),
            sa.Column("record", sa.String(32), nullable=False),
            sa.Column("rules", sa.String(64), nullable=False),
            sa.Column("summary", sa.Text, nullable=False),
            sa.PrimaryKeyConstraint("pathway", "patient", name="pk_patient_wake"),
        ),
        sa.Table(
            "patient_dirty", metadata,
            sa.Column("pathway", sa.String(200), primary_key=True),
            sa.Column("patient", sa.String(200), primary_key=True),
        ),
        sa.Table(
            "patients_file", metadata,
            sa.Column("pathway", sa.String(200), primary_key=True),
            sa.Column("path", sa.String(4096), nullable=False),
            sa.Column("stamp", sa.String(200), nullable=False),
            sa.Column("rejected", sa.Text, nullable=False),
        ),
        sa.Table(
            "patient_lines", metadata,
            sa.Column("pathway", sa.String(200), nullable=False),
            sa.Column("patient", sa.String(200), nullable=False),
            sa.Column("line", sa.Integer, nullable=False),
            sa.Column("offset", sa.Integer, nullable=False),
            sa.Column("length", sa.Integer, nullable=False),
            sa.PrimaryKeyConstraint("pathway", "patient", name="pk_patient_lines"),
        ),
    ]


def upgrade() -> None:
    bind = op.get_bind()
    found = set(sa.inspect(bind).get_table_names())
    for table in _tables(sa.MetaData()):
        if table.name not in found:
            table.create(bind)


def downgrade() -> None:
    for name in ("patient_lines", "patients_file", "patient_dirty", "patient_wake", "event_shared_ids", "event_lines",
                 "event_feed"):
        op.drop_table(name)
