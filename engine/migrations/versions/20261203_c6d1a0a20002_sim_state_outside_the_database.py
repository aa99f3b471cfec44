"""sim state outside the database

The ``sim`` plugin keeps its simulated hosts, machines and volumes in a state file of its own
(``qrm.sim.state``), which does not roll back with the engine's transactions, like a real
hypervisor or storage: its tables leave the engine's database. What they held is not carried
over (the demo registers its boxes and golden images again when ``qrm demo`` runs).

Revision ID: c6d1a0a20002
Revises: c6d1a0a20001
Create Date: 2026-12-03 12:30:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

#: UTC times; MariaDB keeps microseconds only with an explicit precision
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

revision = 'c6d1a0a20002'
down_revision = 'c6d1a0a20001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table('sim_volume')
    op.drop_table('sim_machine')
    op.drop_table('sim_host')


def downgrade() -> None:
    # As in the baseline (b5dca22fc544), empty.
    op.create_table('sim_host',
    sa.Column('resource_id', sa.Integer(), nullable=False),
    sa.Column('cpus', sa.Integer(), nullable=False),
    sa.Column('memory_mb', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['resource_id'], ['resource.id'], name=op.f('fk_sim_host_resource_id_resource'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('resource_id', name=op.f('pk_sim_host'))
    )
    op.create_table('sim_machine',
    sa.Column('resource_id', sa.Integer(), nullable=False),
    sa.Column('host_id', sa.Integer(), nullable=True),
    sa.Column('powered', sa.Boolean(), nullable=False),
    sa.Column('boot_ready_at', TIMESTAMP, nullable=True),
    sa.Column('disk_mb', sa.Integer(), nullable=False),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.ForeignKeyConstraint(['host_id'], ['resource.id'], name=op.f('fk_sim_machine_host_id_resource')),
    sa.ForeignKeyConstraint(['resource_id'], ['resource.id'], name=op.f('fk_sim_machine_resource_id_resource'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('resource_id', name=op.f('pk_sim_machine'))
    )
    op.create_table('sim_volume',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('storage_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('root_device', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.Enum('volume', 'clone', 'snapshot', name='simvolumekind', native_enum=False, length=20), nullable=False),
    sa.Column('size_mb', sa.Integer(), nullable=False),
    sa.Column('origin_id', sa.Integer(), nullable=True),
    sa.Column('authorized_resource_id', sa.Integer(), nullable=True),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.ForeignKeyConstraint(['authorized_resource_id'], ['resource.id'], name=op.f('fk_sim_volume_authorized_resource_id_resource'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['origin_id'], ['sim_volume.id'], name=op.f('fk_sim_volume_origin_id_sim_volume')),
    sa.ForeignKeyConstraint(['storage_id'], ['storage.id'], name=op.f('fk_sim_volume_storage_id_storage'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sim_volume')),
    sa.UniqueConstraint('root_device', name=op.f('uq_sim_volume_root_device')),
    sa.UniqueConstraint('storage_id', 'name', name=op.f('uq_sim_volume_storage_id_name'))
    )
