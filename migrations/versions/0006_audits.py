"""Audits on models: compiled audits on deltapipe.model, results per run in deltapipe.audit_result.

Revision ID: 0006
Revises: 0005
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    ALTER TABLE deltapipe.model ADD COLUMN audits jsonb;
    COMMENT ON COLUMN deltapipe.model.audits IS 'Compiled audits: [{name, blocking, sql, spec, line}]; sql returns the offending rows of the new result, named this.';

    CREATE TABLE deltapipe.audit_result (
        run_id       bigint NOT NULL REFERENCES deltapipe.run(id) ON DELETE CASCADE,
        node         text NOT NULL,
        audit        text NOT NULL,
        blocking     boolean NOT NULL,
        failing_rows bigint NOT NULL,
        sample       jsonb,
        checked_at   timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (run_id, node, audit)
    );
    COMMENT ON TABLE deltapipe.audit_result IS 'Audits of models per run: offending rows of the new result (count and a sample of up to 10); a failing blocking audit kept the table at its last good state.';
    """)


def downgrade() -> None:
    op.execute("""
    DROP TABLE deltapipe.audit_result;
    ALTER TABLE deltapipe.model DROP COLUMN audits;
    """)
