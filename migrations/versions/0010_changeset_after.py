"""changeset.after: the row after the change, for the inserts and updates of a load.

An incremental refresh needs the new row of every changed key of a source. It used to
look each one up in the source table by key: a random index and heap access per row
(and the pruning of the page the load had just updated), the largest single cost of
reading a source's change. The load writes the after-image next to the before-image
instead; rows written before this revision (after IS NULL) are still looked up.

Revision ID: 0010
Revises: 0009
"""
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    ALTER TABLE deltapipe.changeset ADD COLUMN after jsonb;
    COMMENT ON COLUMN deltapipe.changeset.after IS
      'The row after an insert or update by a load (NULL: a delete, or written before revision 0010).';
    """)


def downgrade() -> None:
    op.execute("ALTER TABLE deltapipe.changeset DROP COLUMN after")
