"""Runs can be rolled back: status 'rolled_back'.

Revision ID: 0005
Revises: 0004
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    ALTER TABLE deltapipe.run DROP CONSTRAINT run_status_check;
    ALTER TABLE deltapipe.run ADD CONSTRAINT run_status_check
        CHECK (status IN ('running', 'done', 'failed', 'skipped', 'rolled_back'));
    """)


def downgrade() -> None:
    op.execute("""
    UPDATE deltapipe.run SET status = 'done' WHERE status = 'rolled_back';
    ALTER TABLE deltapipe.run DROP CONSTRAINT run_status_check;
    ALTER TABLE deltapipe.run ADD CONSTRAINT run_status_check
        CHECK (status IN ('running', 'done', 'failed', 'skipped'));
    """)
