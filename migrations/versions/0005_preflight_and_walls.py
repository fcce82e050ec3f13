"""preflight and walls

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('qb_user', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('last_file_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('last_company_name', sa.String(length=255), nullable=True))

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('held_wall', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('wall_hits', sa.Integer(), nullable=False, server_default='0'))

    with op.batch_alter_table('qbwc_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('warnings', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('qbwc_sessions', schema=None) as batch_op:
        batch_op.drop_column('warnings')

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('wall_hits')
        batch_op.drop_column('held_wall')

    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.drop_column('last_company_name')
        batch_op.drop_column('last_file_id')
        batch_op.drop_column('qb_user')


