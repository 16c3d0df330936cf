"""Alembic environment for the ingest tables; always run in-process by `StagingStore.migrate()`.

The caller passes its open connection in `config.attributes["connection"]`, so SQLite's
attached `raw`/`stg` files and the caller's transaction are the ones migrated. The version
table is ingest's own, leaving `alembic_version` free for other layers.
"""

from __future__ import annotations

from alembic import context

from ingest.staging import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    include_schemas=True,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
