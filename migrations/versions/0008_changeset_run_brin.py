"""changeset: the run's rows found through a BRIN index on run_id instead of a btree on (run_id, node).

Every changeset row (loads and model refreshes) paid for a second btree entry; the rows
of a run are appended together, so a block-range index finds them (rollback, deleting
a run) for a tiny fraction of that cost. Reads by node and position keep
changeset_node_seq.

Revision ID: 0008
Revises: 0007
"""
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    DROP INDEX IF EXISTS deltapipe.changeset_run_id_node_idx;
    CREATE INDEX changeset_run_brin ON deltapipe.changeset USING brin (run_id) WITH (autosummarize = on);
    """)


def downgrade() -> None:
    op.execute("""
    DROP INDEX IF EXISTS deltapipe.changeset_run_brin;
    CREATE INDEX changeset_run_id_node_idx ON deltapipe.changeset (run_id, node);
    """)
