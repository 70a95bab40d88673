"""The delta compiler: a model's SELECT (sqlglot) to the statements that refresh it from its inputs' changes."""
