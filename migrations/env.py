"""Alembic environment: run against the connection deltapipe hands over."""

from alembic import context

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - deltapipe always passes a connection
    raise RuntimeError("run migrations through `deltapipe init`")

context.configure(connection=connection, version_table="alembic_version",
                  version_table_schema="deltapipe", transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
