"""indexes for API calls: the log-in throttle's count and a request's last charge

The log-in throttle counts ``login.failed`` events of one actor within a window on every
log-in and API call: ``ix_event_actor_name_time`` makes that a short range scan instead of a
scan of the whole event log. ``CloudRequest`` details carry the time of the last hourly
charge: ``ix_ledger_entry_request_time`` finds it without scanning the ledger.

Revision ID: c6d1a0a20006
Revises: c6d1a0a20004
Create Date: 2026-12-04 15:30:00.000000
"""

from alembic import op

revision = 'c6d1a0a20006'
down_revision = 'c6d1a0a20004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_event_actor_name_time', 'event', ['actor', 'name', 'time'])
    op.create_index('ix_ledger_entry_request_time', 'ledger_entry', ['request_id', 'time'])


REQUEST_KEY = 'fk_ledger_entry_request_id_cloud_request'


def downgrade() -> None:
    # MariaDB dropped the index it had made for the foreign key on request_id when the new
    # one could serve the key, and refuses to drop the new one while the key needs it: the
    # key goes first and comes back with an index of its own, as before the upgrade
    mysql = op.get_bind().dialect.name in ('mysql', 'mariadb')
    if mysql:
        op.drop_constraint(REQUEST_KEY, 'ledger_entry', type_='foreignkey')
    op.drop_index('ix_ledger_entry_request_time', table_name='ledger_entry')
    if mysql:
        op.create_foreign_key(REQUEST_KEY, 'ledger_entry', 'cloud_request', ['request_id'],
                              ['id'])
    op.drop_index('ix_event_actor_name_time', table_name='event')
