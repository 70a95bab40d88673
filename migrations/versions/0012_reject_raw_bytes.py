"""Rejects keep the raw bytes of a line that is not valid text (invalid encoding, a NUL byte).

- reject.raw_bytes: the record's bytes as they were in the file, for a record rejected because
  it is not valid text in the file's encoding (raw_line cannot hold them: text holds no NUL);
  raw_line then shows them escaped (encode(raw_bytes, 'escape')).

The staging tables get a _dp_bytes column (deltapipe.stage, re-created with the routines).

Revision ID: 0012
Revises: 0011
"""
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    ALTER TABLE deltapipe.reject ADD COLUMN raw_bytes bytea;
    COMMENT ON COLUMN deltapipe.reject.raw_bytes IS
      'The record''s bytes as in the file, when it was rejected for not being valid text (encoding, NUL); else NULL.';
    """)


def downgrade() -> None:
    op.execute("ALTER TABLE deltapipe.reject DROP COLUMN raw_bytes")
