"""stg.api_watermarks: per OpenAgenda agenda, the newest `updatedAt` ingested.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_watermarks",
        sa.Column("agenda_uid", sa.String(200), primary_key=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        schema="stg",
    )


def downgrade() -> None:
    op.drop_table("api_watermarks", schema="stg")
