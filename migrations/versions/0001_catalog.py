"""Catalog: datasets, runs, node runs, rejects, changesets, staging registry, load ledger.

Revision ID: 0001
Revises:
"""
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE SCHEMA IF NOT EXISTS deltapipe_stage;

    CREATE TABLE deltapipe.dataset (
        name             text PRIMARY KEY,
        target_schema    text NOT NULL,
        target_table     text NOT NULL,
        key_cols         text[] NOT NULL,
        columns          jsonb NOT NULL,
        mode             text NOT NULL DEFAULT 'snapshot'
                         CHECK (mode IN ('snapshot', 'upsert', 'append', 'changes')),
        options          jsonb NOT NULL DEFAULT '{}',
        row_count        bigint NOT NULL DEFAULT 0,
        checksum         numeric NOT NULL DEFAULT 0,
        last_file_sha256 text,
        last_loaded_at   timestamptz,
        created_at       timestamptz NOT NULL DEFAULT now(),
        UNIQUE (target_schema, target_table)
    );
    COMMENT ON TABLE deltapipe.dataset IS 'A loadable dataset: its target table, key, typed columns and row checksum.';

    CREATE TABLE deltapipe.run (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        pipeline    text,
        kind        text NOT NULL DEFAULT 'load' CHECK (kind IN ('load', 'pipeline')),
        trigger     text NOT NULL DEFAULT 'sql' CHECK (trigger IN ('cli', 'sql', 'cron')),
        status      text NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'done', 'failed', 'skipped')),
        started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
        finished_at timestamptz,
        error       text,
        sqlstate    text,
        args        jsonb NOT NULL DEFAULT '{}',
        backend_pid int DEFAULT pg_backend_pid()
    );
    COMMENT ON TABLE deltapipe.run IS 'One load or pipeline run.';

    CREATE TABLE deltapipe.node_run (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        run_id          bigint NOT NULL REFERENCES deltapipe.run(id) ON DELETE CASCADE,
        node            text NOT NULL,
        node_kind       text NOT NULL DEFAULT 'load',
        status          text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'running', 'done', 'failed', 'skipped')),
        started_at      timestamptz,
        finished_at     timestamptz,
        phases          jsonb NOT NULL DEFAULT '{}',
        mode            text,
        strategy        text,
        rows_in         bigint NOT NULL DEFAULT 0,
        inserted        bigint NOT NULL DEFAULT 0,
        updated         bigint NOT NULL DEFAULT 0,
        deleted         bigint NOT NULL DEFAULT 0,
        unchanged       bigint NOT NULL DEFAULT 0,
        rejected        bigint NOT NULL DEFAULT 0,
        duplicates      bigint NOT NULL DEFAULT 0,
        input_checksum  numeric,
        output_checksum numeric,
        skip_reason     text,
        source_file     text,
        file_sha256     text,
        bytes           bigint,
        error           text,
        sqlstate        text,
        UNIQUE (run_id, node)
    );
    COMMENT ON TABLE deltapipe.node_run IS 'One node (dataset load or model) of a run: status, counts, phase timings in ms.';

    CREATE TABLE deltapipe.reject (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        run_id      bigint REFERENCES deltapipe.run(id) ON DELETE CASCADE,
        node_run_id bigint REFERENCES deltapipe.node_run(id) ON DELETE CASCADE,
        dataset     text NOT NULL,
        source_file text,
        line_no     bigint,
        raw_line    text,
        column_name text,
        sqlstate    text,
        message     text NOT NULL
    );
    CREATE INDEX ON deltapipe.reject (run_id);
    COMMENT ON TABLE deltapipe.reject IS 'Rows refused by validation, with the source line as it was in the file.';

    CREATE TABLE deltapipe.changeset (
        run_id bigint NOT NULL REFERENCES deltapipe.run(id) ON DELETE CASCADE,
        node   text NOT NULL,
        op     char(1) NOT NULL CHECK (op IN ('I', 'U', 'D')),
        key    jsonb NOT NULL,
        before jsonb
    );
    CREATE INDEX ON deltapipe.changeset (run_id, node);
    COMMENT ON TABLE deltapipe.changeset IS 'Net delta per run and node: key, operation and before-image.';

    CREATE TABLE deltapipe.staging (
        table_name text PRIMARY KEY,
        dataset    text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        backend_pid int NOT NULL DEFAULT pg_backend_pid()
    );
    COMMENT ON TABLE deltapipe.staging IS 'Staging tables handed out by deltapipe.stage(); dropped after a load.';

    CREATE TABLE deltapipe.batch (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        run_id      bigint REFERENCES deltapipe.run(id) ON DELETE CASCADE,
        dataset     text NOT NULL,
        source_file text NOT NULL,
        byte_offset bigint NOT NULL,
        byte_length bigint NOT NULL,
        first_line  bigint NOT NULL,
        rows        bigint,
        state       text NOT NULL DEFAULT 'staged'
    );
    COMMENT ON TABLE deltapipe.batch IS 'Load ledger: committed chunks of a source file.';
    """)


def downgrade() -> None:
    op.execute("""
    DROP TABLE deltapipe.batch, deltapipe.staging, deltapipe.changeset, deltapipe.reject,
               deltapipe.node_run, deltapipe.run, deltapipe.dataset;
    DROP SCHEMA deltapipe_stage CASCADE;
    """)
