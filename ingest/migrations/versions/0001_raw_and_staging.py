"""raw.records, stg.venues/events/occurrences/rejects; PostGIS geography + GiST on PostgreSQL.

Revision ID: 0001
Revises:
Create Date: 2025-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
# Generated from lat/lon so that the models stay the same on SQLite, which has no PostGIS.
GEOGRAPHY = (
    "geography(Point,4326) GENERATED ALWAYS AS (CASE WHEN lat IS NULL OR lon IS NULL THEN NULL "
    "ELSE ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography END) STORED"
)


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _add_geography(table: str) -> None:
    op.execute(f"ALTER TABLE stg.{table} ADD COLUMN geog {GEOGRAPHY}")
    op.execute(f"CREATE INDEX ix_stg_{table}_geog ON stg.{table} USING gist (geog)")


def upgrade() -> None:
    if _postgres():
        op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        op.execute("CREATE SCHEMA IF NOT EXISTS raw")
        op.execute("CREATE SCHEMA IF NOT EXISTS stg")
    op.create_table(
        "records",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("row_number", sa.Integer, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("ingested_at", TS, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.UniqueConstraint("source", "content_hash", name="uq_raw_records_source_hash"),
        schema="raw",
    )
    op.create_table(
        "venues",
        sa.Column("venue_key", sa.String(64), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("city", sa.String(200), nullable=False),
        sa.Column("postal_code", sa.String(16), nullable=False),
        sa.Column("lat", sa.Float, nullable=True),
        sa.Column("lon", sa.Float, nullable=True),
        sa.Column("geo_precision", sa.String(8), nullable=False),
        schema="stg",
    )
    op.create_table(
        "events",
        sa.Column("uid", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("start", TS, nullable=False),
        sa.Column("end", TS, nullable=False),
        sa.Column("venue_key", sa.String(64), nullable=False),
        sa.Column("lat", sa.Float, nullable=True),
        sa.Column("lon", sa.Float, nullable=True),
        sa.Column("geo_precision", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attendance_mode", sa.String(8), nullable=False),
        sa.Column("online_url", sa.Text, nullable=False),
        sa.Column("age_min", sa.Integer, nullable=True),
        sa.Column("age_max", sa.Integer, nullable=True),
        sa.Column("accessibility", sa.JSON, nullable=False),
        sa.Column("registration_links", sa.JSON, nullable=False),
        sa.Column("duplicate_of", sa.String(64), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        schema="stg",
    )
    op.create_index("ix_stg_events_venue_key", "events", ["venue_key"], schema="stg")
    op.create_table(
        "occurrences",
        sa.Column("uid", sa.String(64), primary_key=True),
        sa.Column("begin", TS, primary_key=True),
        sa.Column("end", TS, nullable=False),
        schema="stg",
    )
    op.create_table(
        "rejects",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("row_number", sa.Integer, nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.UniqueConstraint("source", "row_number", "content_hash", "rule", name="uq_rejects_row"),
        schema="stg",
    )
    if _postgres():
        _add_geography("venues")
        _add_geography("events")


def downgrade() -> None:
    for table in ("rejects", "occurrences", "events", "venues"):
        op.drop_table(table, schema="stg")
    op.drop_table("records", schema="raw")
