"""Incremental v2: compiled programs reused across deploys, affected-key refreshes, xid positions.

- model.compile_key: a hash of what a model's compiled refresh depends on (its fingerprint, the
  columns and keys of its inputs, the compiler's version); deploy compiles a model again only when
  it changes.
- model.program: the parts of a refresh program that the older columns do not hold (an
  affected-key refresh: the statement that finds the affected keys, the model's SELECT restricted
  to them, the indexes it probes; and, for every shape, how each operator is maintained).
- model.key_inferred: the key was inferred from the query (no `-- key:` header).
- changeset.xid: the transaction that wrote the change. A refresh reads a source's changes
  committed between the snapshot of its last refresh and its own (a sequence number alone is not
  a safe position: a lower number can commit after a higher one).

Revision ID: 0011
Revises: 0010
"""
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    ALTER TABLE deltapipe.model
        ADD COLUMN compile_key  text,
        ADD COLUMN program      jsonb,
        ADD COLUMN key_inferred boolean NOT NULL DEFAULT false;
    COMMENT ON COLUMN deltapipe.model.compile_key IS
      'Hash of the fingerprint, the input columns and keys and the compiler version the compiled refresh was made from.';
    COMMENT ON COLUMN deltapipe.model.program IS
      'Compiled refresh parts: keys_sql, restricted_sql, restrict_col, indexes (affected-key refresh); operators (plan lines).';
    COMMENT ON COLUMN deltapipe.model.key_inferred IS 'key_cols were inferred from the query, not declared.';
    ALTER TABLE deltapipe.changeset ADD COLUMN xid xid8;
    ALTER TABLE deltapipe.changeset ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
    CREATE INDEX changeset_node_xid ON deltapipe.changeset (node, xid);
    -- _input_delta takes the snapshots of the range now (re-created with the routines)
    DROP FUNCTION IF EXISTS deltapipe._input_delta(text, text, text, int, bigint, bigint, bigint[]);
    COMMENT ON COLUMN deltapipe.changeset.xid IS
      'Transaction that wrote the change (NULL: written before revision 0011); positions are snapshots.';
    """)


def downgrade() -> None:
    op.execute("""
    DROP INDEX deltapipe.changeset_node_xid;
    ALTER TABLE deltapipe.changeset DROP COLUMN xid;
    ALTER TABLE deltapipe.model DROP COLUMN compile_key, DROP COLUMN program, DROP COLUMN key_inferred;
    """)
