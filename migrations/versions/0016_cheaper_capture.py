"""Cheaper change capture: deltapipe.changeset without per-statement checks, lz4 for its images.

A capture trigger appends one changeset row per statement of a tracked table; what that INSERT
cost beyond the row itself was paid by every application write:
- the CHECK on changeset.op was parsed and planned again by every INSERT statement (as much as
  a btree insert); op is written only by deltapipe's routines (I, U, D);
- the statement trigger changeset_run_check (the run id check that replaced the foreign key,
  revision 0007) was skipped for captures by a WHEN clause, itself parsed and evaluated per
  statement, and made every INSERT keep a transition table. Changeset rows are written only
  by deltapipe's routines under the run they hold; the trigger goes (deleting a run still
  deletes its changesets: run_changeset_delete).
- key, before and after are compressed with lz4 where the server has it (a statement's keys
  and images are one array: pglz took a tenth of a tracked 100k-row INSERT).

Revision ID: 0016
Revises: 0015
"""
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    ALTER TABLE deltapipe.changeset DROP CONSTRAINT IF EXISTS changeset_op_check;
    DROP TRIGGER IF EXISTS changeset_run_check ON deltapipe.changeset;
    DO $$
    BEGIN
        ALTER TABLE deltapipe.changeset ALTER COLUMN key SET COMPRESSION lz4,
                                        ALTER COLUMN before SET COMPRESSION lz4,
                                        ALTER COLUMN after SET COMPRESSION lz4;
    EXCEPTION WHEN feature_not_supported THEN
        NULL;  -- a server built without lz4 keeps pglz
    END
    $$;
    """)


def downgrade() -> None:
    op.execute("""
    ALTER TABLE deltapipe.changeset ALTER COLUMN key SET COMPRESSION default,
                                    ALTER COLUMN before SET COMPRESSION default,
                                    ALTER COLUMN after SET COMPRESSION default;
    ALTER TABLE deltapipe.changeset ADD CONSTRAINT changeset_op_check CHECK (op IN ('I', 'U', 'D'));
    """)
