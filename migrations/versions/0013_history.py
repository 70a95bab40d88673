"""History (SCD2) mode: a dataset's load mode may be history; the time a load opened and closed its versions.

- dataset.mode: also 'history'.

- node_run.valid_at: the timestamp a load of a dataset with history wrote into the valid_from of the
  versions it opened and the valid_to of those it closed (unique per dataset: later than every earlier
  load's). Rollback removes the versions opened at that time and reopens those closed at it.

Revision ID: 0013
Revises: 0012
"""
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    ALTER TABLE deltapipe.dataset DROP CONSTRAINT dataset_mode_check,
        ADD CONSTRAINT dataset_mode_check CHECK (mode IN ('snapshot', 'upsert', 'append', 'changes', 'history'));
    ALTER TABLE deltapipe.node_run ADD COLUMN valid_at timestamptz;
    COMMENT ON COLUMN deltapipe.node_run.valid_at IS
      'History mode: valid_from of the versions this load opened and valid_to of those it closed (NULL: no history).';
    """)


def downgrade() -> None:
    op.execute("""
    ALTER TABLE deltapipe.node_run DROP COLUMN valid_at;
    UPDATE deltapipe.dataset SET mode = 'snapshot' WHERE mode = 'history';
    ALTER TABLE deltapipe.dataset DROP CONSTRAINT dataset_mode_check,
        ADD CONSTRAINT dataset_mode_check CHECK (mode IN ('snapshot', 'upsert', 'append', 'changes'));
    """)
