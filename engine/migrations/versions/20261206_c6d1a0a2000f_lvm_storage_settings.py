"""lvm storage settings: the volume group, clone mode, export kind and server of each LVM
storage (the lvm-storage plugin's lvm_storage)

Revision ID: c6d1a0a2000f
Revises: c6d1a0a20007
Create Date: 2026-12-06 22:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = 'c6d1a0a2000f'
down_revision = 'c6d1a0a20007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'lvm_storage',
        sa.Column('storage_id', sa.Integer(), nullable=False),
        sa.Column('volume_group', sa.String(length=127), nullable=False),
        sa.Column('clone', sa.String(length=10), nullable=False),
        sa.Column('export', sa.String(length=10), nullable=False),
        sa.Column('server', sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(['storage_id'], ['storage.id'],
                                name=op.f('fk_lvm_storage_storage_id_storage'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('storage_id', name=op.f('pk_lvm_storage')),
    )


def downgrade() -> None:
    op.drop_table('lvm_storage')
