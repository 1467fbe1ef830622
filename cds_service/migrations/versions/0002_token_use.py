"""Create token_use: JWT ids already used, shared by every worker and host.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "token_use",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_token_use_expires_at", "token_use", ["expires_at"])


def downgrade() -> None:
    op.drop_table("token_use")
