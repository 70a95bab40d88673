"""Table- and column-level lineage read from SQL files with sqlglot."""
