"""kvm hosts: the libvirt side of each KVM host resource (the kvm plugin's kvm_host)

Revision ID: c6d1a0a20007
Revises: c6d1a0a2000a
Create Date: 2026-12-06 21:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = 'c6d1a0a20007'
down_revision = 'c6d1a0a2000a'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'kvm_host',
        sa.Column('resource_id', sa.Integer(), nullable=False),
        sa.Column('uri', sa.String(length=255), nullable=False),
        sa.Column('domain_type', sa.String(length=10), nullable=False),
        sa.Column('interface_xml', sa.Text(), nullable=True),
        sa.Column('image_dir', sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(['resource_id'], ['resource.id'],
                                name=op.f('fk_kvm_host_resource_id_resource'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('resource_id', name=op.f('pk_kvm_host')),
    )


def downgrade() -> None:
    op.drop_table('kvm_host')
