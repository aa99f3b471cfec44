"""baseline: the datacenter, the cloud, the ledger, plugin states, the sim plugin's tables

Seeds what every installation starts with: the built-in ``physical`` virtualization type, the
``ramdisk`` deployment type, and the 22 default products of the cloud selector.

Revision ID: b5dca22fc544
Revises:
Create Date: 2026-11-24 00:08:25.310167
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

#: UTC times; MariaDB keeps microseconds only with an explicit precision
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

revision = 'b5dca22fc544'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('admin_user',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('email', sa.String(length=255), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('language', sa.String(length=10), nullable=False),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_admin_user')),
    sa.UniqueConstraint('name', name=op.f('uq_admin_user_name'))
    )
    op.create_table('cloud_config',
    sa.Column('key', sa.String(length=50), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('updated_at', TIMESTAMP, nullable=False),
    sa.Column('updated_by', sa.String(length=120), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_cloud_config'))
    )
    op.create_table('cloud_user',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('forename', sa.String(length=100), nullable=False),
    sa.Column('lastname', sa.String(length=100), nullable=False),
    sa.Column('email', sa.String(length=255), nullable=False),
    sa.Column('street', sa.String(length=100), nullable=False),
    sa.Column('city', sa.String(length=100), nullable=False),
    sa.Column('country', sa.String(length=100), nullable=False),
    sa.Column('phone', sa.String(length=100), nullable=False),
    sa.Column('status', sa.Enum('active', 'disabled', 'pending', name='clouduserstatus', native_enum=False, length=20), nullable=False),
    sa.Column('ccus', sa.Numeric(precision=18, scale=4), nullable=False),
    sa.Column('language', sa.String(length=10), nullable=False),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cloud_user')),
    sa.UniqueConstraint('name', name=op.f('uq_cloud_user_name'))
    )
    op.create_table('deployment_type',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=False),
    sa.Column('storage_type', sa.String(length=50), nullable=True),
    sa.Column('plugin', sa.String(length=50), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deployment_type')),
    sa.UniqueConstraint('name', name=op.f('uq_deployment_type_name'))
    )
    op.create_table('event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('time', TIMESTAMP, nullable=False),
    sa.Column('level', sa.Enum('critical', 'error', 'warning', 'notice', 'info', 'debug', name='eventlevel', native_enum=False, length=20), nullable=False),
    sa.Column('source', sa.String(length=50), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=120), nullable=False),
    sa.Column('object_type', sa.String(length=50), nullable=True),
    sa.Column('object_id', sa.Integer(), nullable=True),
    sa.Column('acknowledged', sa.Boolean(), nullable=False),
    sa.Column('command_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event'))
    )
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.create_index('ix_event_object', ['object_type', 'object_id'], unique=False)
        batch_op.create_index('ix_event_time', ['time'], unique=False)

    op.create_table('ip_group',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('network', sa.String(length=50), nullable=False),
    sa.Column('netmask', sa.String(length=50), nullable=False),
    sa.Column('gateway', sa.String(length=50), nullable=False),
    sa.Column('dns1', sa.String(length=50), nullable=False),
    sa.Column('dns2', sa.String(length=50), nullable=False),
    sa.Column('domain', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ip_group')),
    sa.UniqueConstraint('name', name=op.f('uq_ip_group_name'))
    )
    op.create_table('job_lease',
    sa.Column('job_id', sa.String(length=100), nullable=False),
    sa.Column('owner', sa.String(length=200), nullable=False),
    sa.Column('expires_at', TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint('job_id', name=op.f('pk_job_lease'))
    )
    op.create_table('kernel',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('version', sa.String(length=50), nullable=False),
    sa.Column('comment', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_kernel')),
    sa.UniqueConstraint('name', name=op.f('uq_kernel_name'))
    )
    op.create_table('plugin',
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('state', sa.Enum('disabled', 'enabled', 'started', name='pluginstate', native_enum=False, length=20), nullable=False),
    sa.Column('updated_at', TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_plugin'))
    )
    op.create_table('product',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('type', sa.Enum('cpu', 'disk', 'ha', 'kernel', 'memory', 'network', 'puppet', 'quantity', 'resource', name='producttype', native_enum=False, length=20), nullable=False),
    sa.Column('sort_id', sa.Integer(), nullable=False),
    sa.Column('quantity', sa.String(length=100), nullable=False),
    sa.Column('price', sa.Numeric(precision=18, scale=4), nullable=False),
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_product')),
    sa.UniqueConstraint('type', 'quantity', name=op.f('uq_product_type_quantity'))
    )
    op.create_table('storage',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('storage_type', sa.String(length=50), nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=True),
    sa.Column('capacity_mb', sa.Integer(), nullable=False),
    sa.Column('comment', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_storage')),
    sa.UniqueConstraint('name', name=op.f('uq_storage_name'))
    )
    op.create_table('virtualization_type',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.Enum('physical', 'host', 'vm', name='virtualizationkind', native_enum=False, length=20), nullable=False),
    sa.Column('plugin', sa.String(length=50), nullable=True),
    sa.Column('host_type_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['host_type_id'], ['virtualization_type.id'], name=op.f('fk_virtualization_type_host_type_id_virtualization_type')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_virtualization_type')),
    sa.UniqueConstraint('name', name=op.f('uq_virtualization_type_name'))
    )
    op.create_table('cloud_user_limits',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('resource_limit', sa.Integer(), nullable=False),
    sa.Column('memory_limit_mb', sa.Integer(), nullable=False),
    sa.Column('disk_limit_mb', sa.Integer(), nullable=False),
    sa.Column('cpu_limit', sa.Integer(), nullable=False),
    sa.Column('network_limit', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['cloud_user.id'], name=op.f('fk_cloud_user_limits_user_id_cloud_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_cloud_user_limits'))
    )
    op.create_table('image',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('storage_id', sa.Integer(), nullable=True),
    sa.Column('deployment_type_id', sa.Integer(), nullable=False),
    sa.Column('root_device', sa.String(length=255), nullable=False),
    sa.Column('root_fs_type', sa.String(length=20), nullable=False),
    sa.Column('size_mb', sa.Integer(), nullable=False),
    sa.Column('is_master', sa.Boolean(), nullable=False),
    sa.Column('origin_id', sa.Integer(), nullable=True),
    sa.Column('owner_id', sa.Integer(), nullable=True),
    sa.Column('comment', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['deployment_type_id'], ['deployment_type.id'], name=op.f('fk_image_deployment_type_id_deployment_type')),
    sa.ForeignKeyConstraint(['origin_id'], ['image.id'], name=op.f('fk_image_origin_id_image')),
    sa.ForeignKeyConstraint(['owner_id'], ['cloud_user.id'], name=op.f('fk_image_owner_id_cloud_user')),
    sa.ForeignKeyConstraint(['storage_id'], ['storage.id'], name=op.f('fk_image_storage_id_storage')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_image')),
    sa.UniqueConstraint('name', name=op.f('uq_image_name'))
    )
    op.create_table('cloud_request',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('new', 'approved', 'active', 'denied', 'deprovision', 'done', 'no-resources', name='requeststatus', native_enum=False, length=20), nullable=False),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.Column('start', TIMESTAMP, nullable=False),
    sa.Column('stop', TIMESTAMP, nullable=False),
    sa.Column('kernel_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('virtualization_type_id', sa.Integer(), nullable=False),
    sa.Column('memory_mb', sa.Integer(), nullable=False),
    sa.Column('cpus', sa.Integer(), nullable=False),
    sa.Column('disk_mb', sa.Integer(), nullable=False),
    sa.Column('network_cards', sa.Integer(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('ha', sa.Boolean(), nullable=False),
    sa.Column('clone_on_deploy', sa.Boolean(), nullable=False),
    sa.Column('puppet_groups', sa.JSON(), nullable=False),
    sa.Column('price_per_hour', sa.Numeric(precision=18, scale=4), nullable=False),
    sa.Column('price_breakdown', sa.JSON(), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=False),
    sa.Column('status_changed_at', TIMESTAMP, nullable=False),
    sa.Column('next_step_at', TIMESTAMP, nullable=True),
    sa.ForeignKeyConstraint(['image_id'], ['image.id'], name=op.f('fk_cloud_request_image_id_image')),
    sa.ForeignKeyConstraint(['kernel_id'], ['kernel.id'], name=op.f('fk_cloud_request_kernel_id_kernel')),
    sa.ForeignKeyConstraint(['user_id'], ['cloud_user.id'], name=op.f('fk_cloud_request_user_id_cloud_user')),
    sa.ForeignKeyConstraint(['virtualization_type_id'], ['virtualization_type.id'], name=op.f('fk_cloud_request_virtualization_type_id_virtualization_type')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cloud_request'))
    )
    with op.batch_alter_table('cloud_request', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cloud_request_next_step_at'), ['next_step_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_cloud_request_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_cloud_request_user_id'), ['user_id'], unique=False)

    op.create_table('resource',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('mac', sa.String(length=17), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('hostname', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.Enum('physical', 'host', 'vm', name='virtualizationkind', native_enum=False, length=20), nullable=False),
    sa.Column('virtualization_type_id', sa.Integer(), nullable=False),
    sa.Column('host_id', sa.Integer(), nullable=True),
    sa.Column('state', sa.Enum('unknown', 'booting', 'idle', 'active', 'transition', 'off', 'error', name='resourcestate', native_enum=False, length=20), nullable=False),
    sa.Column('cpus', sa.Integer(), nullable=False),
    sa.Column('memory_mb', sa.Integer(), nullable=False),
    sa.Column('nics', sa.Integer(), nullable=False),
    sa.Column('load', sa.Numeric(precision=8, scale=2), nullable=True),
    sa.Column('uptime_s', sa.Integer(), nullable=True),
    sa.Column('last_report_at', TIMESTAMP, nullable=True),
    sa.Column('agent_token_hash', sa.String(length=255), nullable=True),
    sa.Column('kernel_id', sa.Integer(), nullable=True),
    sa.Column('image_id', sa.Integer(), nullable=True),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.ForeignKeyConstraint(['host_id'], ['resource.id'], name=op.f('fk_resource_host_id_resource')),
    sa.ForeignKeyConstraint(['image_id'], ['image.id'], name=op.f('fk_resource_image_id_image')),
    sa.ForeignKeyConstraint(['kernel_id'], ['kernel.id'], name=op.f('fk_resource_kernel_id_kernel')),
    sa.ForeignKeyConstraint(['virtualization_type_id'], ['virtualization_type.id'], name=op.f('fk_resource_virtualization_type_id_virtualization_type')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_resource')),
    sa.UniqueConstraint('mac', name=op.f('uq_resource_mac'))
    )
    # storage -> resource closes a cycle (resource -> image -> storage): added once both exist
    with op.batch_alter_table('storage', schema=None) as batch_op:
        batch_op.create_foreign_key(batch_op.f('fk_storage_resource_id_resource'), 'resource', ['resource_id'], ['id'])

    op.create_table('appliance',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kernel_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=True),
    sa.Column('virtualization_type_id', sa.Integer(), nullable=False),
    sa.Column('cpus', sa.Integer(), nullable=False),
    sa.Column('memory_mb', sa.Integer(), nullable=False),
    sa.Column('nics', sa.Integer(), nullable=False),
    sa.Column('ha', sa.Boolean(), nullable=False),
    sa.Column('state', sa.Enum('stopped', 'starting', 'active', 'stopping', 'error', name='appliancestate', native_enum=False, length=20), nullable=False),
    sa.Column('started_at', TIMESTAMP, nullable=True),
    sa.Column('stopped_at', TIMESTAMP, nullable=True),
    sa.Column('comment', sa.String(length=255), nullable=False),
    sa.Column('capabilities', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['image.id'], name=op.f('fk_appliance_image_id_image')),
    sa.ForeignKeyConstraint(['kernel_id'], ['kernel.id'], name=op.f('fk_appliance_kernel_id_kernel')),
    sa.ForeignKeyConstraint(['resource_id'], ['resource.id'], name=op.f('fk_appliance_resource_id_resource')),
    sa.ForeignKeyConstraint(['virtualization_type_id'], ['virtualization_type.id'], name=op.f('fk_appliance_virtualization_type_id_virtualization_type')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_appliance')),
    sa.UniqueConstraint('name', name=op.f('uq_appliance_name')),
    sa.UniqueConstraint('resource_id', name=op.f('uq_appliance_resource_id'))
    )
    op.create_table('command',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=True),
    sa.Column('executor', sa.String(length=20), nullable=False),
    sa.Column('argv', sa.JSON(), nullable=False),
    sa.Column('state', sa.Enum('queued', 'running', 'done', 'failed', name='commandstate', native_enum=False, length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('timeout_s', sa.Integer(), nullable=False),
    sa.Column('not_before', TIMESTAMP, nullable=False),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.Column('finished_at', TIMESTAMP, nullable=True),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('output', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=120), nullable=False),
    sa.ForeignKeyConstraint(['resource_id'], ['resource.id'], name=op.f('fk_command_resource_id_resource')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_command'))
    )
    with op.batch_alter_table('command', schema=None) as batch_op:
        batch_op.create_index('ix_command_state_not_before', ['state', 'not_before'], unique=False)

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
    op.create_table('storage_authorization',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=True),
    sa.Column('updated_at', TIMESTAMP, nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['image.id'], name=op.f('fk_storage_authorization_image_id_image'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['resource_id'], ['resource.id'], name=op.f('fk_storage_authorization_resource_id_resource')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_storage_authorization')),
    sa.UniqueConstraint('image_id', name=op.f('uq_storage_authorization_image_id'))
    )
    op.create_table('cloud_appliance',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('state', sa.Enum('provisioning', 'active', 'paused', 'error', 'deprovisioning', 'removed', name='cloudappliancestate', native_enum=False, length=20), nullable=False),
    sa.Column('step', sa.Enum('new', 'appliance', 'resource', 'image', 'addresses', 'starting', 'running', 'stopping', 'released', 'failed', name='provisionstep', native_enum=False, length=20), nullable=False),
    sa.Column('appliance_id', sa.Integer(), nullable=True),
    sa.Column('resource_id', sa.Integer(), nullable=True),
    sa.Column('created_vm_id', sa.Integer(), nullable=True),
    sa.Column('clone_image_id', sa.Integer(), nullable=True),
    sa.Column('disk_mb', sa.Integer(), nullable=False),
    sa.Column('active_since', TIMESTAMP, nullable=True),
    sa.Column('active_until', TIMESTAMP, nullable=True),
    sa.Column('hours_charged', sa.Integer(), nullable=False),
    sa.Column('comment', sa.String(length=255), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['appliance_id'], ['appliance.id'], name=op.f('fk_cloud_appliance_appliance_id_appliance')),
    sa.ForeignKeyConstraint(['clone_image_id'], ['image.id'], name=op.f('fk_cloud_appliance_clone_image_id_image')),
    sa.ForeignKeyConstraint(['created_vm_id'], ['resource.id'], name=op.f('fk_cloud_appliance_created_vm_id_resource')),
    sa.ForeignKeyConstraint(['request_id'], ['cloud_request.id'], name=op.f('fk_cloud_appliance_request_id_cloud_request')),
    sa.ForeignKeyConstraint(['resource_id'], ['resource.id'], name=op.f('fk_cloud_appliance_resource_id_resource')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cloud_appliance')),
    sa.UniqueConstraint('name', name=op.f('uq_cloud_appliance_name')),
    sa.UniqueConstraint('request_id', 'index', name=op.f('uq_cloud_appliance_request_id_index'))
    )
    with op.batch_alter_table('cloud_appliance', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cloud_appliance_request_id'), ['request_id'], unique=False)

    op.create_table('ip_address',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=45), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('cloud_appliance_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['cloud_appliance_id'], ['cloud_appliance.id'], name=op.f('fk_ip_address_cloud_appliance_id_cloud_appliance'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['group_id'], ['ip_group.id'], name=op.f('fk_ip_address_group_id_ip_group'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ip_address')),
    sa.UniqueConstraint('address', name=op.f('uq_ip_address_address'))
    )
    op.create_table('ledger_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=True),
    sa.Column('cloud_appliance_id', sa.Integer(), nullable=True),
    sa.Column('time', TIMESTAMP, nullable=False),
    sa.Column('period_start', TIMESTAMP, nullable=True),
    sa.Column('amount', sa.Numeric(precision=18, scale=4), nullable=False),
    sa.Column('balance_after', sa.Numeric(precision=18, scale=4), nullable=False),
    sa.Column('reason', sa.String(length=50), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=120), nullable=False),
    sa.ForeignKeyConstraint(['cloud_appliance_id'], ['cloud_appliance.id'], name=op.f('fk_ledger_entry_cloud_appliance_id_cloud_appliance')),
    sa.ForeignKeyConstraint(['request_id'], ['cloud_request.id'], name=op.f('fk_ledger_entry_request_id_cloud_request')),
    sa.ForeignKeyConstraint(['user_id'], ['cloud_user.id'], name=op.f('fk_ledger_entry_user_id_cloud_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_entry')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_ledger_entry_idempotency_key'))
    )
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_entry_user_time', ['user_id', 'time'], unique=False)

    _seed()


def _seed() -> None:
    virtualization_type = sa.table(
        "virtualization_type", sa.column("name"), sa.column("label"), sa.column("kind"),
        sa.column("plugin"),
    )
    op.bulk_insert(virtualization_type, [
        {"name": "physical", "label": "Physical System", "kind": "physical", "plugin": None},
    ])
    deployment_type = sa.table(
        "deployment_type", sa.column("name"), sa.column("label"), sa.column("storage_type"),
        sa.column("plugin"),
    )
    op.bulk_insert(deployment_type, [
        {"name": "ramdisk", "label": "Ramdisk deployment", "storage_type": None, "plugin": None},
    ])
    product = sa.table(
        "product", sa.column("type"), sa.column("sort_id"), sa.column("quantity"),
        sa.column("price", sa.Numeric(18, 4)), sa.column("name"), sa.column("description"),
        sa.column("enabled", sa.Boolean),
    )
    rows = []
    for sort_id, (cpus, price) in enumerate([(1, 1), (2, 2), (4, 4)]):
        label = "1 CPU" if cpus == 1 else f"{cpus} CPUs"
        rows.append(("cpu", sort_id, str(cpus), price, label, label))
    for sort_id, megabytes in enumerate([2000, 5000, 10000, 20000, 50000, 100000]):
        label = f"{megabytes // 1000} GB"
        rows.append(("disk", sort_id, str(megabytes), megabytes // 1000, label,
                     f"{label} Disk Space"))
    for sort_id, (megabytes, price, label) in enumerate(
        [(256, 1, "256 MB"), (512, 2, "512 MB"), (1024, 4, "1 GB"), (2048, 8, "2 GB")]
    ):
        rows.append(("memory", sort_id, str(megabytes), price, label, f"{label} Memory"))
    for sort_id, nics in enumerate([1, 2, 3, 4]):
        label = "1 NIC" if nics == 1 else f"{nics} NICs"
        description = "1 Network Card" if nics == 1 else f"{nics} Network Cards"
        rows.append(("network", sort_id, str(nics), nics, label, description))
    for sort_id, count in enumerate([1, 2, 3, 4, 5]):
        description = "1 CloudAppliance" if count == 1 else f"{count} CloudAppliances"
        rows.append(("quantity", sort_id, str(count), count, str(count), description))
    op.bulk_insert(product, [
        {"type": type_, "sort_id": sort_id, "quantity": quantity, "price": price,
         "name": name, "description": description, "enabled": True}
        for type_, sort_id, quantity, price, name, description in rows
    ])


def downgrade() -> None:
    # drop_table takes a table's indexes with it (MariaDB refuses to drop an index an FK uses)
    op.drop_table('ledger_entry')
    op.drop_table('ip_address')
    op.drop_table('cloud_appliance')
    op.drop_table('storage_authorization')
    op.drop_table('sim_volume')
    op.drop_table('sim_machine')
    op.drop_table('sim_host')
    op.drop_table('command')
    op.drop_table('appliance')
    with op.batch_alter_table('storage', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_storage_resource_id_resource'), type_='foreignkey')
    op.drop_table('resource')
    op.drop_table('cloud_request')
    op.drop_table('image')
    op.drop_table('cloud_user_limits')
    op.drop_table('virtualization_type')
    op.drop_table('storage')
    op.drop_table('product')
    op.drop_table('plugin')
    op.drop_table('kernel')
    op.drop_table('job_lease')
    op.drop_table('ip_group')
    op.drop_table('event')
    op.drop_table('deployment_type')
    op.drop_table('cloud_user')
    op.drop_table('cloud_config')
    op.drop_table('admin_user')
