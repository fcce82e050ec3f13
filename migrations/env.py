"""Alembic environment: runs against the engine (or connection) qwc-service hands it.

``qwc-service db upgrade`` and ``serve`` call alembic programmatically with the
engine in ``config.attributes``; a developer may also run ``alembic`` from the
repository root, in which case ``QWC_DATABASE_URL`` (or the default SQLite
file) is used.
"""

from __future__ import annotations

from alembic import context

from qwc_service.models import Base

target_metadata = Base.metadata
config = context.config


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = config.attributes.get("engine")
    if engine is None:
        from qwc_service.config import Settings
        from qwc_service.database import make_engine

        engine = make_engine(Settings.from_env().database_url)
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
