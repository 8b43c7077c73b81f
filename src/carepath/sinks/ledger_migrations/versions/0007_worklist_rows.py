"""What each patient contributes to the worklist: `worklist_patients` (one row per patient:
care-plan view and counts) and `worklist_tasks` (each open task and the patient's most
recently closed ones, with what decides their band), written when a patient is re-planned
(carepath.sinks.worklist_rows), so a sweep builds the bounded worklist from small indexed
rows instead of a pass over every stored output.

New tables only: an existing ledger's next sweep fills them in one pass over its outputs
(the rows are marked complete per pathway in `document_snapshots`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    patients = sa.Table(
        "worklist_patients", metadata,
        sa.Column("pathway", sa.String(200), nullable=False),
        sa.Column("patient", sa.String(200), nullable=False),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("view", sa.Text, nullable=False),
        sa.Column("attention", sa.Integer, nullable=False),
        sa.Column("shown", sa.Integer, nullable=False),
        sa.Column("open", sa.Integer, nullable=False),
        sa.Column("done", sa.Integer, nullable=False),
        sa.Column("cancelled", sa.Integer, nullable=False),
        sa.Column("closed", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("pathway", "patient", name="pk_worklist_patients"),
        sa.Index("ix_worklist_patients_attention", "pathway", "attention", "patient"),
    )
    tasks = sa.Table(
        "worklist_tasks", metadata,
        sa.Column("pathway", sa.String(200), nullable=False),
        sa.Column("task", sa.String(80), nullable=False),
        sa.Column("patient", sa.String(200), nullable=False),
        sa.Column("open", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("safety", sa.Integer, nullable=False),
        sa.Column("role", sa.String(200), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("due", sa.String(40), nullable=True),
        sa.Column("due_day", sa.String(10), nullable=True),
        sa.Column("earliest", sa.String(40), nullable=False),
        sa.Column("acknowledged", sa.Integer, nullable=False),
        sa.Column("closed_at", sa.String(40), nullable=True),
        sa.PrimaryKeyConstraint("pathway", "task", name="pk_worklist_tasks"),
        sa.Index("ix_worklist_tasks_patient", "pathway", "patient"),
        sa.Index("ix_worklist_tasks_open_due", "pathway", "open", "due", "due_day", "earliest", "status", "safety",
                 "role", "priority"),
        sa.Index("ix_worklist_tasks_closed", "pathway", "open", "closed_at"),
    )
    return patients, tasks


def upgrade() -> None:
    bind = op.get_bind()
    present = set(sa.inspect(bind).get_table_names())
    for table in _tables(sa.MetaData()):
        if table.name not in present:
            table.create(bind)


def downgrade() -> None:
    op.drop_table("worklist_tasks")
    op.drop_table("worklist_patients")
