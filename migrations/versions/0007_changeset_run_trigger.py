"""changeset.run_id: a statement-level check instead of a foreign key.

A foreign key checks (and locks) the run once per changeset row, which was the largest
single cost of writing a big delta. The link is now kept by deltapipe._changeset_run
(sql/functions), whose triggers check the run ids once per INSERT statement and delete a
run's changesets with the run. The triggers are created with the routine (they need it);
this revision only drops the constraint (and the previous signature of deltapipe._input_delta).

Revision ID: 0007
Revises: 0006
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    ALTER TABLE deltapipe.changeset DROP CONSTRAINT IF EXISTS changeset_run_id_fkey;
    -- _input_delta gained a parameter (the runs to read); the old signature would linger
    DROP FUNCTION IF EXISTS deltapipe._input_delta(text, text, text, int, bigint, bigint);
    """)


def downgrade() -> None:
    op.execute("""
    DROP TRIGGER IF EXISTS changeset_run_check ON deltapipe.changeset;
    DROP TRIGGER IF EXISTS run_changeset_delete ON deltapipe.run;
    DROP FUNCTION IF EXISTS deltapipe._changeset_run();
    DELETE FROM deltapipe.changeset c WHERE NOT EXISTS (SELECT 1 FROM deltapipe.run r WHERE r.id = c.run_id);
    ALTER TABLE deltapipe.changeset ADD CONSTRAINT changeset_run_id_fkey
        FOREIGN KEY (run_id) REFERENCES deltapipe.run(id) ON DELETE CASCADE;
    """)
