"""Lineage: a graph of files, tables and columns built from SQL files; the parse cache; scan counters.

Revision ID: 0004
Revises: 0003
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE deltapipe.lineage_node (
        id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind text NOT NULL CHECK (kind IN ('file', 'table', 'column')),
        name text NOT NULL,
        UNIQUE (kind, name)
    );
    COMMENT ON TABLE deltapipe.lineage_node IS
      'Lineage graph nodes: a SQL file (absolute path), a table (schema.table) or a column (schema.table.column).';

    CREATE TABLE deltapipe.lineage_edge (
        src  bigint NOT NULL REFERENCES deltapipe.lineage_node(id) ON DELETE CASCADE,
        dst  bigint NOT NULL REFERENCES deltapipe.lineage_node(id) ON DELETE CASCADE,
        kind text NOT NULL CHECK (kind IN ('reads', 'writes', 'derives')),
        file text NOT NULL,
        PRIMARY KEY (src, dst, kind, file)
    );
    CREATE INDEX lineage_edge_dst ON deltapipe.lineage_edge (dst, kind);
    CREATE INDEX lineage_edge_file ON deltapipe.lineage_edge (file);
    COMMENT ON TABLE deltapipe.lineage_edge IS
      'Lineage edges in the direction data flows, found in FILE: table -reads-> file, file -writes-> table, '
      'table -derives-> table and column -derives-> column.';

    CREATE TABLE deltapipe.parse_cache (
        sha256    text NOT NULL,
        parser    text NOT NULL,
        result    jsonb NOT NULL,
        hits      bigint NOT NULL DEFAULT 0,
        parsed_at timestamptz NOT NULL DEFAULT now(),
        last_hit_at timestamptz,
        PRIMARY KEY (sha256, parser)
    );
    COMMENT ON TABLE deltapipe.parse_cache IS
      'What a SQL file says (tables read and written, column derivations, or its parse error), by SHA-256 of the '
      'file content and parser version: unchanged files are not parsed again.';

    CREATE TABLE deltapipe.lineage_scan (
        id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        root         text NOT NULL,
        started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
        finished_at  timestamptz,
        files        int NOT NULL DEFAULT 0,
        cache_hits   int NOT NULL DEFAULT 0,
        cache_misses int NOT NULL DEFAULT 0,
        failed       int NOT NULL DEFAULT 0,
        edges_added  int NOT NULL DEFAULT 0,
        edges_removed int NOT NULL DEFAULT 0
    );
    COMMENT ON TABLE deltapipe.lineage_scan IS 'One `deltapipe lineage scan`: files seen, parse-cache hits and misses, failures.';
    """)


def downgrade() -> None:
    op.execute("DROP TABLE deltapipe.lineage_scan, deltapipe.parse_cache, deltapipe.lineage_edge, deltapipe.lineage_node")
