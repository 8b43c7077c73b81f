"""What `carepath export --since STAMP` needs: `outputs.changed_gen`, the pathway
generation at which each output's exported state last changed, and `sweeps`, one row per
sweep (its stamp, as-of and generation).

Existing outputs get generation 0: only sweeps recorded from this revision on are known
stamps, and each of those stands at or after every change made before it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if "changed_gen" not in {c["name"] for c in inspector.get_columns("outputs")}:
        op.add_column("outputs", sa.Column("changed_gen", sa.Integer, nullable=False, server_default="0"))
        op.create_index("ix_outputs_pathway_changed_gen", "outputs", ["pathway", "changed_gen"])
    if "sweeps" not in set(inspector.get_table_names()):
        op.create_table(
            "sweeps",
            sa.Column("pathway", sa.String(200), nullable=False),
            sa.Column("stamp", sa.String(40), nullable=False),
            sa.Column("as_of", sa.String(40), nullable=False),
            sa.Column("generation", sa.Integer, nullable=False),
            sa.Column("run", sa.String(64), nullable=False),
            sa.PrimaryKeyConstraint("pathway", "stamp", name="pk_sweeps"),
        )
        op.create_index("ix_sweeps_pathway_as_of", "sweeps", ["pathway", "as_of"])


def downgrade() -> None:
    op.drop_table("sweeps")
    op.drop_index("ix_outputs_pathway_changed_gen", table_name="outputs")
    with op.batch_alter_table("outputs") as batch:
        batch.drop_column("changed_gen")
