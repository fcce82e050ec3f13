"""partial indexes for the claim path

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28

The next job of a connection is the first row of ``ix_jobs_next``; before,
every poll sorted all of the connection's queued jobs (measured: claim p99
9–12 ms at 1M queued jobs, 70 pairs/s at 2,500 queued per connection).
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    not_held, held = sa.text("held_wall IS NULL"), sa.text("held_wall IS NOT NULL")
    op.create_index('ix_jobs_next', 'jobs', ['connection_id', 'state', sa.text('priority DESC'), 'id'],
                    sqlite_where=not_held, postgresql_where=not_held)
    op.create_index('ix_jobs_held', 'jobs', ['connection_id', 'state', 'held_wall'],
                    sqlite_where=held, postgresql_where=held)


def downgrade() -> None:
    op.drop_index('ix_jobs_held', table_name='jobs')
    op.drop_index('ix_jobs_next', table_name='jobs')
