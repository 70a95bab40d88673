"""Change capture: tracked application tables, out-of-band writes of datasets, refresh statistics.

- deltapipe.tracked: a table whose writes statement-level triggers append to deltapipe.changeset
  (an application table tracked with `deltapipe track`, or a dataset's own table, whose writes
  outside deltapipe's loads are changes too). Each has one capture run (run.kind 'capture') its
  changes are logged under; `epoch` counts its TRUNCATEs and column changes (its readers refresh
  in full once when it moves); `columns` is the column signature last seen.
- run.kind 'capture'.
- run_stat: per pipeline run, tables touched, models refreshed and rows of change (deltapipe metrics).

Revision ID: 0014
Revises: 0013
"""
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    ALTER TABLE deltapipe.run DROP CONSTRAINT run_kind_check;
    ALTER TABLE deltapipe.run ADD CONSTRAINT run_kind_check CHECK (kind IN ('load', 'pipeline', 'capture'));

    CREATE TABLE deltapipe.tracked (
        name          text PRIMARY KEY,
        target_schema text NOT NULL,
        target_table  text NOT NULL,
        key_cols      text[] NOT NULL,
        dataset       text,
        run_id        bigint,
        epoch         int NOT NULL DEFAULT 0,
        columns       text NOT NULL,
        writes        bigint NOT NULL DEFAULT 0,
        tracked_at    timestamptz NOT NULL DEFAULT now(),
        UNIQUE (target_schema, target_table)
    );
    COMMENT ON TABLE deltapipe.tracked IS
      'Tables whose writes are captured into deltapipe.changeset by statement triggers: tracked application tables '
      '(name schema.table) and datasets'' tables (dataset set: writes outside deltapipe''s loads).';
    COMMENT ON COLUMN deltapipe.tracked.run_id IS 'The capture run its changes are logged under (a dataset''s: created by its first write outside a load).';
    COMMENT ON COLUMN deltapipe.tracked.epoch IS 'TRUNCATEs and column changes seen: readers refresh in full once when it moves.';
    COMMENT ON COLUMN deltapipe.tracked.columns IS 'Column signature (name type, ...) last seen.';
    COMMENT ON COLUMN deltapipe.tracked.writes IS 'Statements captured on a dataset''s table (out-of-band writes).';

    CREATE TABLE deltapipe.run_stat (
        run_id           bigint PRIMARY KEY,
        pipeline         text,
        tables_touched   int NOT NULL DEFAULT 0,
        models_refreshed int NOT NULL DEFAULT 0,
        models_full      int NOT NULL DEFAULT 0,
        change_rows      bigint NOT NULL DEFAULT 0,
        recorded_at      timestamptz NOT NULL DEFAULT now()
    );
    COMMENT ON TABLE deltapipe.run_stat IS
      'Per pipeline run: inputs with changes (tables touched), models refreshed (of which in full), rows of change read.';
    """)


def downgrade() -> None:
    op.execute("""
    DROP TABLE deltapipe.run_stat;
    DROP TABLE deltapipe.tracked;
    DELETE FROM deltapipe.run WHERE kind = 'capture';
    ALTER TABLE deltapipe.run DROP CONSTRAINT run_kind_check;
    ALTER TABLE deltapipe.run ADD CONSTRAINT run_kind_check CHECK (kind IN ('load', 'pipeline'));
    """)
