"""Delivery is its own step: the letter queue; the dead per-sink table goes.

- `letter_queue`: the due letters planning queued for the `deliver-letters` step, each
  claimed under a lease before it is sent (so processes sharing the ledger send it once)
  and removed in the transaction that records its send; a letter that could not be
  rendered or sent stays as `failed` with a reason free of patient data.
- `outputs` is indexed by (pathway, updated run): a sweep's change feed reads what that
  run created or changed.
- The table of per-sink output digests (written by nothing since documents are rewritten
  from the ledger's generation, and letters recorded in `letter_sends`) is dropped. Before
  it goes, the letters it records as written by the `letters` sink (an earlier carepath
  wrote them before the letters outbox existed) and that no channel's send records yet
  count as sent, so no letter is sent twice; their send time is not known (`sent_at`
  stays empty).

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

_DEAD = "deliveries"  # the old per-sink table, written by carepath before this revision


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
        _adopt_written_letters(bind)
        op.drop_table(_DEAD)
    if "ix_outputs_pathway_updated_run" not in {i["name"] for i in sa.inspect(bind).get_indexes("outputs")}:
        op.create_index("ix_outputs_pathway_updated_run", "outputs", ["pathway", "updated_run"])


def _adopt_written_letters(bind: sa.Connection) -> None:
    dead = sa.table(_DEAD, sa.column("sink"), sa.column("output_id"), sa.column("run"))
    sends = sa.table("letter_sends", sa.column("channel"), sa.column("output_id"), sa.column("sent_at"),
                     sa.column("run"))
    already = sa.select(sa.literal(1)).where(sends.c.output_id == dead.c.output_id)  # on any channel
    written = sa.select(dead.c.sink, dead.c.output_id, sa.literal(""), dead.c.run).where(
        dead.c.sink == "letters", ~already.exists())
    if bind.execute(sends.insert().from_select(["channel", "output_id", "sent_at", "run"], written)).rowcount:
        # letters.jsonl of every pathway shows these sends: each must be rewritten
        generations = sa.table("pathway_generations", sa.column("value"))
        bind.execute(generations.update().values(value=generations.c.value + 1))


def downgrade() -> None:
    op.drop_index("ix_outputs_pathway_updated_run", "outputs")
    op.drop_table("letter_queue")
    op.create_table(_DEAD, sa.Column("sink", sa.String(64), primary_key=True),
                    sa.Column("output_id", sa.String(80), primary_key=True),
                    sa.Column("digest", sa.String(64), nullable=False), sa.Column("run", sa.String(64), nullable=False))
