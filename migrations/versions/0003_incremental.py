"""Incremental refresh: changeset sequence numbers, compiled delta statements and watermarks on models.

Revision ID: 0003
Revises: 0002
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    ALTER TABLE deltapipe.changeset ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
    CREATE INDEX changeset_node_seq ON deltapipe.changeset (node, seq);
    COMMENT ON COLUMN deltapipe.changeset.seq IS 'Order of changes; a model consumes the changes of each upstream after its watermark.';

    ALTER TABLE deltapipe.model
        ADD COLUMN incremental   boolean NOT NULL DEFAULT false,
        ADD COLUMN why_full      text,
        ADD COLUMN shape         text,
        ADD COLUMN delta_sql     text,
        ADD COLUMN delta_inputs  text[],
        ADD COLUMN state_sql     text,
        ADD COLUMN hidden_cols   text[],
        ADD COLUMN agg_spec      jsonb,
        ADD COLUMN watermark     jsonb;
    ALTER TABLE deltapipe.node_run ADD COLUMN full_because text;
    COMMENT ON COLUMN deltapipe.node_run.full_because IS 'Why a model was refreshed in full rather than from the changes of its inputs.';
    COMMENT ON COLUMN deltapipe.model.incremental IS 'The model is maintained from the deltas of its inputs (delta_sql), else refreshed in full.';
    COMMENT ON COLUMN deltapipe.model.why_full IS 'When not incremental: the construct that prevents it, with its line.';
    COMMENT ON COLUMN deltapipe.model.shape IS 'linear (filter/projection/union all/inner joins), aggregate (GROUP BY) or distinct.';
    COMMENT ON COLUMN deltapipe.model.delta_sql IS 'SELECT of the model''s change as rows with a weight (_dp_w), reading pg_temp._dp_d_<i> for the change of delta_inputs[i].';
    COMMENT ON COLUMN deltapipe.model.state_sql IS 'Full statement with the hidden state columns (counts, sums) of an aggregate or distinct model.';
    COMMENT ON COLUMN deltapipe.model.watermark IS 'Per upstream: last changeset seq consumed and its row count then.';
    """)


def downgrade() -> None:
    op.execute("""
    ALTER TABLE deltapipe.model DROP COLUMN incremental, DROP COLUMN why_full, DROP COLUMN shape,
        DROP COLUMN delta_sql, DROP COLUMN delta_inputs, DROP COLUMN state_sql, DROP COLUMN hidden_cols,
        DROP COLUMN agg_spec, DROP COLUMN watermark;
    ALTER TABLE deltapipe.node_run DROP COLUMN full_because;
    DROP INDEX deltapipe.changeset_node_seq;
    ALTER TABLE deltapipe.changeset DROP COLUMN seq;
    """)
