"""One patient's incremental state in one table, its wake indexed.

Revisions 0001 and 0002 kept what one step writes about a patient after planning them in
two tables: `patient_state` (the whole plan's digest) and `patient_wake` (when the plan
next changes, what it was made from, its summary). They become one table,
`patient_state`, written in one statement, with an index on (pathway, wake) so a sweep
asks the database for the patients whose wake has come instead of reading every row.

Every row of `patient_wake` is carried over with its patient's plan digest. A plan
digest without a wake row (a run killed between the two writes) is left behind: that
patient is re-planned as new by the next sweep, which compares their outputs one by one
and records nothing twice.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_MERGING = "patient_state_0006"  # the merged table while both old ones still exist


def _merged(metadata: sa.MetaData, name: str) -> sa.Table:
    return sa.Table(
        name, metadata,
        sa.Column("pathway", sa.String(200), nullable=False),
        sa.Column("patient", sa.String(200), nullable=False),
        sa.Column("wake", sa.String(40), nullable=True),
        sa.Column("as_of", sa.String(40), nullable=False),
        sa.Column("record", sa.String(32), nullable=False),
        sa.Column("rules", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=True),
        sa.Column("summary", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("pathway", "patient", name="pk_patient_state"),
    )


_COLUMNS = ("pathway", "patient", "wake", "as_of", "record", "rules", "summary")


def upgrade() -> None:
    bind = op.get_bind()
    found = set(sa.inspect(bind).get_table_names())
    merged = _merged(sa.MetaData(), _MERGING)
    merged.create(bind)
    if "patient_wake" in found:
        wake = sa.table("patient_wake", *[sa.column(c) for c in _COLUMNS])
        columns = [wake.c[c] for c in _COLUMNS]
        if "patient_state" in found:
            state = sa.table("patient_state", sa.column("pathway"), sa.column("patient"), sa.column("digest"))
            source = sa.select(*columns, state.c.digest).select_from(wake.outerjoin(
                state, (state.c.pathway == wake.c.pathway) & (state.c.patient == wake.c.patient)))
        else:
            source = sa.select(*columns, sa.null())
        bind.execute(merged.insert().from_select([*_COLUMNS, "digest"], source))
        op.drop_table("patient_wake")
    if "patient_state" in found:
        op.drop_table("patient_state")
    op.rename_table(_MERGING, "patient_state")
    op.create_index("ix_patient_state_wake", "patient_state", ["pathway", "wake"])


def downgrade() -> None:
    bind = op.get_bind()
    op.drop_index("ix_patient_state_wake", "patient_state")
    op.rename_table("patient_state", _MERGING)
    merged = sa.table(_MERGING, *[sa.column(c) for c in (*_COLUMNS, "digest")])
    wake = op.create_table(
        "patient_wake",
        sa.Column("pathway", sa.String(200), nullable=False),
        sa.Column("patient", sa.String(200), nullable=False),
        sa.Column("wake", sa.String(40), nullable=True),
        sa.Column("as_of", sa.String(40), nullable=False),
        sa.Column("record", sa.String(32), nullable=False),
        sa.Column("rules", sa.String(64), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("pathway", "patient", name="pk_patient_wake"),
    )
    state = op.create_table(
        "patient_state",
        sa.Column("pathway", sa.String(200), primary_key=True),
        sa.Column("patient", sa.String(200), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("run", sa.String(64), nullable=False),
    )
    bind.execute(wake.insert().from_select(list(_COLUMNS), sa.select(*[merged.c[c] for c in _COLUMNS])))
    bind.execute(state.insert().from_select(
        ["pathway", "patient", "digest", "run"],
        sa.select(merged.c.pathway, merged.c.patient, merged.c.digest, sa.literal("0006-downgrade"))
        .where(merged.c.digest.is_not(None))))
    op.drop_table(_MERGING)
