"""sync user security

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('auth_counters',
    sa.Column('scope', sa.String(length=200), nullable=False),
    sa.Column('connection_id', sa.Integer(), nullable=True),
    sa.Column('client_address', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('window_started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('scope')
    )
    op.create_table('auth_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('connection_id', sa.Integer(), nullable=True),
    sa.Column('client_address', sa.String(length=64), nullable=False),
    sa.Column('result', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('auth_events', schema=None) as batch_op:
        batch_op.create_index('ix_auth_events_at', ['at'], unique=False)
        batch_op.create_index('ix_auth_events_connection', ['connection_id', 'client_address', 'at'], unique=False)

    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('always_open', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('min_run_every_seconds', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.drop_column('min_run_every_seconds')
        batch_op.drop_column('always_open')

    with op.batch_alter_table('auth_events', schema=None) as batch_op:
        batch_op.drop_index('ix_auth_events_connection')
        batch_op.drop_index('ix_auth_events_at')

    op.drop_table('auth_events')
    op.drop_table('auth_counters')

