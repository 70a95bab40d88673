"""Pipelines: deployed pipelines, their models and dependency edges; queue columns on node_run.

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE deltapipe.pipeline (
        name        text PRIMARY KEY,
        root        text,
        schema_name text NOT NULL DEFAULT 'public',
        config      jsonb NOT NULL DEFAULT '{}',
        deployed_at timestamptz NOT NULL DEFAULT now()
    );
    COMMENT ON TABLE deltapipe.pipeline IS 'A deployed pipeline: its directory, target schema and pipeline.toml (sources).';

    CREATE TABLE deltapipe.model (
        pipeline          text NOT NULL REFERENCES deltapipe.pipeline(name) ON DELETE CASCADE,
        name              text NOT NULL,
        target_schema     text NOT NULL,
        target_table      text NOT NULL,
        sql               text NOT NULL,
        key_cols          text[],
        fingerprint       text NOT NULL,
        source_file       text,
        row_count         bigint NOT NULL DEFAULT 0,
        checksum          numeric,
        last_refreshed_at timestamptz,
        deployed_at       timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (pipeline, name),
        UNIQUE (target_schema, target_table)
    );
    COMMENT ON TABLE deltapipe.model IS 'A SQL model of a pipeline: its SELECT, key, fingerprint of the normalized SQL, and output checksum.';

    CREATE TABLE deltapipe.model_edge (
        pipeline      text NOT NULL,
        node          text NOT NULL,
        upstream      text NOT NULL,
        upstream_kind text NOT NULL CHECK (upstream_kind IN ('model', 'source', 'external')),
        PRIMARY KEY (pipeline, node, upstream),
        FOREIGN KEY (pipeline, node) REFERENCES deltapipe.model (pipeline, name) ON DELETE CASCADE
    );
    COMMENT ON TABLE deltapipe.model_edge IS 'Dependencies: model NODE reads UPSTREAM (another model, a source dataset, or an external table schema.table).';

    ALTER TABLE deltapipe.node_run
        ADD COLUMN upstreams   text[] NOT NULL DEFAULT '{}',
        ADD COLUMN fingerprint text,
        ADD COLUMN inputs      jsonb,
        ADD COLUMN worker      text;
    CREATE INDEX node_run_run_status ON deltapipe.node_run (run_id, status);
    CREATE INDEX node_run_node ON deltapipe.node_run (node, status);
    """)


def downgrade() -> None:
    op.execute("""
    DROP INDEX deltapipe.node_run_node;
    DROP INDEX deltapipe.node_run_run_status;
    ALTER TABLE deltapipe.node_run DROP COLUMN upstreams, DROP COLUMN fingerprint, DROP COLUMN inputs,
        DROP COLUMN worker;
    DROP TABLE deltapipe.model_edge, deltapipe.model, deltapipe.pipeline;
    """)
