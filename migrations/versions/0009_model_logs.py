"""Model change logs: each model's net changes go to a typed table of its own in schema deltapipe_log.

A model refresh recorded every changed row in deltapipe.changeset as two jsonb images
(key and before-image) plus a (node, seq) index entry: at a 1% change of a 1M-row DAG,
writing those rows was a quarter of an incremental refresh. A typed log row (the new
and the old image as columns, one position per refresh) costs a fifth of that. Source
loads keep writing deltapipe.changeset.

model.log_seq is the position of the last change logged for the model (what a
downstream model's watermark points at). The watermarks of existing models are
cleared: their next refresh runs in full once, then incrementally from the logs.

Revision ID: 0009
Revises: 0008
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE SCHEMA IF NOT EXISTS deltapipe_log;
    COMMENT ON SCHEMA deltapipe_log IS 'deltapipe: the change log of each model (read them with deltapipe.changes(pipeline, model)).';
    ALTER TABLE deltapipe.model ADD COLUMN log_seq bigint NOT NULL DEFAULT 0;
    COMMENT ON COLUMN deltapipe.model.log_seq IS 'Position (changeset seq) of the last change in the model''s change log.';
    UPDATE deltapipe.model SET watermark = NULL;
    DROP FUNCTION IF EXISTS deltapipe._image_sql(text[], text[], text[]);
    """)


def downgrade() -> None:
    op.execute("""
    ALTER TABLE deltapipe.model DROP COLUMN log_seq;
    UPDATE deltapipe.model SET watermark = NULL;
    DROP SCHEMA deltapipe_log CASCADE;
    """)
