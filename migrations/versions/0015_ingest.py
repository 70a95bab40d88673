"""Ingest: record-level changes pushed by applications (deltapipe.ingest).

- node_run.after_coalesce: for an ingest (a load node run with mode 'ingest'), the number of keys
  left with a net operation after the ops given on one key were coalesced (rows_in is the number
  of rows received, inserted/updated/deleted/unchanged/rejected what became of them).

Revision ID: 0015
Revises: 0014
"""
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    ALTER TABLE deltapipe.node_run ADD COLUMN after_coalesce bigint;
    COMMENT ON COLUMN deltapipe.node_run.after_coalesce IS
      'Ingest (mode ingest): keys left with a net operation after coalescing the ops given on each key.';
    """)


def downgrade() -> None:
    op.execute("""
    ALTER TABLE deltapipe.node_run DROP COLUMN after_coalesce;
    """)
