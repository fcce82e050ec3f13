"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-28
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('connections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('username', sa.String(length=100), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('company_file', sa.String(length=1024), nullable=False),
    sa.Column('owner_id', sa.String(length=38), nullable=False),
    sa.Column('file_id', sa.String(length=38), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name'),
    sa.UniqueConstraint('username')
    )
    op.create_table('qbwc_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_hash', sa.String(length=64), nullable=False),
    sa.Column('connection_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('client_address', sa.String(length=64), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('company_file_name', sa.String(length=1024), nullable=False),
    sa.Column('qbxml_country', sa.String(length=8), nullable=False),
    sa.Column('qbxml_major', sa.Integer(), nullable=True),
    sa.Column('qbxml_minor', sa.Integer(), nullable=True),
    sa.Column('host_facts', sa.JSON(), nullable=True),
    sa.Column('connection_error_hresult', sa.String(length=32), nullable=False),
    sa.Column('connection_error_message', sa.Text(), nullable=False),
    sa.Column('jobs_done', sa.Integer(), nullable=False),
    sa.Column('jobs_failed', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ticket_hash')
    )
    with op.batch_alter_table('qbwc_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_qbwc_sessions_connection_state', ['connection_id', 'state'], unique=False)

    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('connection_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('request_xml', sa.Text(), nullable=False),
    sa.Column('request_types', sa.String(length=1024), nullable=False),
    sa.Column('is_write', sa.Boolean(), nullable=False),
    sa.Column('qbxml_version', sa.String(length=16), nullable=True),
    sa.Column('response_xml', sa.Text(), nullable=True),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('status_severity', sa.String(length=16), nullable=True),
    sa.Column('status_message', sa.Text(), nullable=True),
    sa.Column('hresult', sa.String(length=32), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('session_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['qbwc_sessions.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_claim', ['connection_id', 'state', 'priority', 'id'], unique=False)
        batch_op.create_index('ix_jobs_session', ['session_id'], unique=False)
        batch_op.create_index('ix_jobs_state', ['state'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_state')
        batch_op.drop_index('ix_jobs_session')
        batch_op.drop_index('ix_jobs_claim')

    op.drop_table('jobs')
    with op.batch_alter_table('qbwc_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_qbwc_sessions_connection_state')

    op.drop_table('qbwc_sessions')
    op.drop_table('connections')

