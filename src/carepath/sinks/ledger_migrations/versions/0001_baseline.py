"""Baseline: the ledger's tables as carepath had them when it adopted migrations.

A fresh database gets them all. A ledger written by an earlier carepath (tables present,
no version table) gets the tables it lacks, and its outputs keyed by `id` alone are
re-keyed by (pathway, id), so it ends in the same state as a fresh one; the letters it
wrote before the letters outbox count as sent from revision 0003 on (which reads them
from the table it then drops). The tables those versions kept only for bookkeeping (`meta`: its one-time flags
and an unused global generation; `snapshots`: document states from before they were kept
per pathway) are dropped.

The definitions are this revision's own copy: later revisions change the schema by their
own operations, and carepath.sinks.ledger holds the tables as the code queries them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _tables(metadata: sa.MetaData) -> dict[str, sa.Table]:
    tables = [
        sa.Table(
            "outputs", metadata,
            sa.Column("id", sa.String(80), nullable=False),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("patient", sa.String(200), nullable=False),
            sa.Column("pathway", sa.String(200), nullable=False),
            sa.Column("digest", sa.String(64), nullable=False),
            sa.Column("body", sa.Text, nullable=False),
            sa.Column("retired", sa.Integer, nullable=False),
            sa.Column("first_run", sa.String(64), nullable=False),
            sa.Column("updated_run", sa.String(64), nullable=False),
            sa.PrimaryKeyConstraint("pathway", "id", name="pk_outputs"),
            sa.Index("ix_outputs_pathway_patient", "pathway", "patient"),
        ),
        sa.Table(
            "document_snapshots", metadata,
            sa.Column("pathway", sa.String(200), primary_key=True),
            sa.Column("sink", sa.String(64), primary_key=True),
            sa.Column("state", sa.String(200), nullable=False),
            sa.Column("run", sa.String(64), nullable=False),
        ),
        sa.Table(
            "pathway_generations", metadata,
            sa.Column("pathway", sa.String(200), primary_key=True),
            sa.Column("value", sa.Integer, nullable=False),
        ),
        sa.Table(
            "pins", metadata,
            sa.Column("patient", sa.String(200), primary_key=True),
            sa.Column("pathway", sa.String(200), primary_key=True),
            sa.Column("version", sa.String(64), nullable=False),
            sa.Column("run", sa.String(64), nullable=False),
        ),
        sa.Table(
            "pathway_versions", metadata,
            sa.Column("pathway", sa.String(200), primary_key=True),
            sa.Column("version", sa.String(64), primary_key=True),
            sa.Column("digest", sa.String(64), nullable=False),
            sa.Column("source", sa.Text, nullable=False),
        ),
        sa.Table(
            "patient_state", metadata,
            sa.Column("pathway", sa.String(200), primary_key=True),
            sa.Column("patient", sa.String(200), primary_key=True),
            sa.Column("digest", sa.String(64), nullable=False),
            sa.Column("run", sa.String(64), nullable=False),
        ),
        sa.Table(
            "letter_sends", metadata,
            sa.Column("channel", sa.String(64), primary_key=True),
            sa.Column("output_id", sa.String(80), primary_key=True),
            sa.Column("sent_at", sa.String(40), nullable=False),
            sa.Column("run", sa.String(64), nullable=False),
        ),
    ]
    return {t.name: t for t in tables}


def upgrade() -> None:
    bind = op.get_bind()
    found = set(sa.inspect(bind).get_table_names())
    tables = _tables(sa.MetaData())
    for name, table in tables.items():
        if name not in found:
            table.create(bind)
    if "outputs" in found:
        _scope_outputs_by_pathway(bind, tables["outputs"], tables["patient_state"])
    if "meta" in found:
        op.drop_table("meta")
    if "snapshots" in found:
        op.drop_table("snapshots")


def downgrade() -> None:
    raise RuntimeError("the ledger's baseline cannot be undone: restore the ledger from a backup instead")


def _scope_outputs_by_pathway(bind: sa.Connection, outputs: sa.Table, patient_state: sa.Table) -> None:
    """Outputs keyed by id alone become keyed by (pathway, id). When more than one pathway
    wrote into that ledger, one pathway's run may have retired or overwritten another's
    outputs of a shared patient ref, so every plan digest is forgotten: each pathway's next
    run records each patient's outputs again (what is unchanged stays unchanged; sent
    letters are never sent again)."""
    if "pathway" in sa.inspect(bind).get_pk_constraint("outputs")["constrained_columns"]:
        return
    op.rename_table("outputs", "outputs_unscoped")
    outputs.create(bind)
    names = [c.name for c in outputs.columns]
    old = sa.table("outputs_unscoped", *[sa.column(n) for n in names])
    bind.execute(outputs.insert().from_select(names, sa.select(*[old.c[n] for n in names])))
    op.drop_table("outputs_unscoped")
    pathways = bind.execute(sa.select(sa.func.count(sa.func.distinct(outputs.c.pathway)))).scalar_one()
    if pathways > 1:
        bind.execute(patient_state.delete())
