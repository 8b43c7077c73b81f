"""Delivery is its own step: the letter queue; the dead per-sink table goes.

- `letter_queue`: the due letters planning queued for the `deliver-letters` step, each
  claimed under a lease before it is sent (so processes sharing the ledger send it once)
  and removed in the transaction that records its send; a letter that could not be
  rendered or sent stays as `failed` with a reason free of patient data.
- `outputs` is indexed by (pathway, updated run): a sweep's change feed reads what that
  run created or changed.
- The table of per-sink output digests (written by nothing since documents are rewritten
  from the ledger's generation, and letters recorded in `letter_sends`) is dropped.

A ledger upgraded with letters due and never sent: their patients were left to be
re-planned by the next sweep (their plan digest unset), which queues them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_DEAD = "deliveries"  # the old per-sink table (revision 0001 created it)


def _queue(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "letter_queue", metadata,
        sa.Column("pathway", sa.String(200), nullable=False),
        sa.Column("letter_id", sa.String(80), nullable=False),
        sa.Column("patient", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_until", sa.String(40), nullable=True),
        sa.Column("run", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("pathway", "letter_id", name="pk_letter_queue"),
    )


def upgrade() -> None:
    bind = op.get_bind()
    found = set(sa.inspect(bind).get_table_names())
    if "letter_queue" not in found:
        _queue(sa.MetaData()).create(bind)
    if _DEAD in found:
        op.drop_table(_DEAD)
    if "ix_outputs_pathway_updated_run" not in {i["name"] for i in sa.inspect(bind).get_indexes("outputs")}:
        op.create_index("ix_outputs_pathway_updated_run", "outputs", ["pathway", "updated_run"])


def downgrade() -> None:
    op.drop_index("ix_outputs_pathway_updated_run", "outputs")
    op.drop_table("letter_queue")
    op.create_table(_DEAD, sa.Column("sink", sa.String(64), primary_key=True),
                    sa.Column("output_id", sa.String(80), primary_key=True),
                    sa.Column("digest", sa.String(64), nullable=False), sa.Column("run", sa.String(64), nullable=False))
