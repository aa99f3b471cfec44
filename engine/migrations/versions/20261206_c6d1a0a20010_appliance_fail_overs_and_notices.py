"""appliance fail-overs and notices

Revision ID: c6d1a0a20010
Revises: c6d1a0a2000d
Create Date: 2026-12-06 21:34:41.546402
"""

import sqlalchemy as sa
from alembic import op

import engine.db

revision = 'c6d1a0a20010'
down_revision = 'c6d1a0a2000d'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('notice',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('time', engine.db.UTCDateTime(), nullable=False),
    sa.Column('recipient', sa.String(length=60), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('msgid', sa.Text(), nullable=False),
    sa.Column('mapping', sa.JSON(), nullable=False),
    sa.Column('object_type', sa.String(length=50), nullable=True),
    sa.Column('object_id', sa.Integer(), nullable=True),
    sa.Column('sent_at', engine.db.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notice'))
    )
    with op.batch_alter_table('notice', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notice_sent_at'), ['sent_at'], unique=False)

    op.create_table('appliance_failover',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('appliance_id', sa.Integer(), nullable=True),
    sa.Column('open_appliance_id', sa.Integer(), nullable=True),
    sa.Column('failed_resource_id', sa.Integer(), nullable=True),
    sa.Column('new_resource_id', sa.Integer(), nullable=True),
    sa.Column('created_vm_id', sa.Integer(), nullable=True),
    sa.Column('step', sa.Enum('fencing', 'stopping', 'placing', 'placed', 'starting', 'done', 'aborted', name='failoverstep', native_enum=False, length=20), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=False),
    sa.Column('actor', sa.String(length=120), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('fence_round', sa.Integer(), nullable=False),
    sa.Column('fenced_by', sa.String(length=20), nullable=False),
    sa.Column('waiting', sa.String(length=60), nullable=False),
    sa.Column('due_at', engine.db.UTCDateTime(), nullable=False),
    sa.Column('created_at', engine.db.UTCDateTime(), nullable=False),
    sa.Column('finished_at', engine.db.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['appliance_id'], ['appliance.id'], name=op.f('fk_appliance_failover_appliance_id_appliance'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['failed_resource_id'], ['resource.id'], name=op.f('fk_appliance_failover_failed_resource_id_resource'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['new_resource_id'], ['resource.id'], name=op.f('fk_appliance_failover_new_resource_id_resource'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_appliance_failover')),
    sa.UniqueConstraint('open_appliance_id', name=op.f('uq_appliance_failover_open_appliance_id'))
    )
    with op.batch_alter_table('appliance_failover', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_appliance_failover_appliance_id'), ['appliance_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_appliance_failover_failed_resource_id'), ['failed_resource_id'], unique=False)
        batch_op.create_index('ix_appliance_failover_step_due', ['step', 'due_at'], unique=False)



def downgrade() -> None:
    # dropping a table drops its indexes (MariaDB refuses to drop an index a foreign key
    # needs on its own)
    op.drop_table('appliance_failover')
    op.drop_table('notice')
