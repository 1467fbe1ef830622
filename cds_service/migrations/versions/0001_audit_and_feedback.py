"""Create card_audit and card_feedback.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "card_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("card_uuid", sa.String(64), nullable=False),
        sa.Column("service_id", sa.String(128), nullable=False),
        sa.Column("hook_instance", sa.String(128), nullable=False),
        sa.Column("shown_at", sa.DateTime, nullable=False),
        sa.Column("variant", sa.String(64), nullable=True),
        sa.Column("criteria", sa.JSON, nullable=False),
        sa.Column("knowledge_version", sa.String(128), nullable=False),
        sa.Column("patient_hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_card_audit_card_uuid", "card_audit", ["card_uuid"])
    op.create_index("ix_card_audit_shown_at", "card_audit", ["shown_at"])
    op.create_table(
        "card_feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("card_uuid", sa.String(64), nullable=False),
        sa.Column("service_id", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("accepted_suggestions", sa.JSON, nullable=False),
        sa.Column("override_system", sa.String(512), nullable=True),
        sa.Column("override_code", sa.String(256), nullable=True),
        sa.Column("user_comment", sa.Text, nullable=True),
        sa.Column("outcome_at", sa.DateTime, nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_card_feedback_card_uuid", "card_feedback", ["card_uuid"])
    op.create_index("ix_card_feedback_outcome_at", "card_feedback", ["outcome_at"])


def downgrade() -> None:
    op.drop_table("card_feedback")
    op.drop_table("card_audit")
