"""queue guarantees

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""
from __future__ import annotations

import zlib
from typing import Callable

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('job_dependencies',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('depends_on_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['depends_on_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'depends_on_id')
    )
    with op.batch_alter_table('job_dependencies', schema=None) as batch_op:
        batch_op.create_index('ix_job_dependencies_depends_on', ['depends_on_id'], unique=False)

    op.create_table('job_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('from_state', sa.String(length=16), nullable=False),
    sa.Column('to_state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('job_events', schema=None) as batch_op:
        batch_op.create_index('ix_job_events_job', ['job_id', 'id'], unique=False)

    op.create_table('job_pages',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('response_xml', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'seq')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dedupe_key', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('not_before', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('page_size', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('iterator_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('webhook_url', sa.String(length=2000), nullable=True))
        batch_op.add_column(sa.Column('statuses', sa.JSON(), nullable=True))
        batch_op.alter_column('response_xml', new_column_name='response_text')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('response_xml', sa.LargeBinary(), nullable=True))
        batch_op.drop_index(batch_op.f('ix_jobs_state'))
        batch_op.create_index('ix_jobs_state', ['state', 'finished_at'], unique=False)
        batch_op.create_index('ix_jobs_dedupe', ['connection_id', 'dedupe_key'], unique=False)

    # Responses are now stored zlib-compressed (models.CompressedText).
    _convert_responses("response_text", "response_xml", _compress)
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('response_text')


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_dedupe')
        batch_op.drop_index('ix_jobs_state')
        batch_op.create_index(batch_op.f('ix_jobs_state'), ['state'], unique=False)
        batch_op.alter_column('response_xml', new_column_name='response_blob')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('response_xml', sa.TEXT(), nullable=True))
        batch_op.drop_column('statuses')
        batch_op.drop_column('webhook_url')
        batch_op.drop_column('iterator_id')
        batch_op.drop_column('page_size')
        batch_op.drop_column('attempts')
        batch_op.drop_column('not_before')
        batch_op.drop_column('dedupe_key')
    _convert_responses("response_blob", "response_xml", _decompress)
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('response_blob')

    op.drop_table('job_pages')
    with op.batch_alter_table('job_events', schema=None) as batch_op:
        batch_op.drop_index('ix_job_events_job')

    op.drop_table('job_events')
    with op.batch_alter_table('job_dependencies', schema=None) as batch_op:
        batch_op.drop_index('ix_job_dependencies_depends_on')

    op.drop_table('job_dependencies')



def _compress(text):  # type: ignore[no-untyped-def]
    return None if text is None else zlib.compress(text.encode("utf-8", "surrogatepass"), 1)


def _decompress(blob):  # type: ignore[no-untyped-def]
    return None if blob is None else zlib.decompress(blob).decode("utf-8", "surrogatepass")


def _convert_responses(source: str, target: str, convert: Callable) -> None:  # type: ignore[type-arg]
    jobs = sa.table("jobs", sa.column("id", sa.Integer), sa.column(source), sa.column(target))
    bind = op.get_bind()
    rows = bind.execute(sa.select(jobs.c.id, jobs.c[source]).where(jobs.c[source].is_not(None))).all()
    for job_id, value in rows:
        bind.execute(jobs.update().where(jobs.c.id == job_id).values({target: convert(value)}))
