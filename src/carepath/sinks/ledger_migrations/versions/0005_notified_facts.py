"""What on-call was told: `notified_facts`, one row per fact of urgent or safety work
(raised, escalated, acknowledged, a hold breached) per pathway, with the page it made
(`page_key`: patient, episode and tier, when it paged) and whether it was announced.

A new table only: an existing ledger's next re-plan records the facts of the open urgent
and safety work it finds, once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "notified_facts", metadata,
        sa.Column("pathway", sa.String(200), nullable=False),
        sa.Column("fact", sa.String(400), nullable=False),
        sa.Column("patient", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("page_key", sa.String(400), nullable=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("run", sa.String(64), nullable=False),
        sa.Column("announced", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("pathway", "fact", name="pk_notified_facts"),
        sa.Index("ix_notified_facts_patient", "pathway", "patient"),
        sa.Index("ix_notified_facts_pending", "pathway", "announced"),
    )


def upgrade() -> None:
    bind = op.get_bind()
    if "notified_facts" not in set(sa.inspect(bind).get_table_names()):
        _table(sa.MetaData()).create(bind)


def downgrade() -> None:
    op.drop_table("notified_facts")
