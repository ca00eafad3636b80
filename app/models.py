"""SQLAlchemy 2 tables (docs/design.md section 3); migrations/versions must agree."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    MetaData,
    Sequence,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.principals import LEGACY_PRINCIPAL, PRINCIPAL_LENGTH, ROLES
from app.run_status import RunStatus
from app.schedule import catchup

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

RUN_STATUSES = tuple(RunStatus)  # app/run_status.py: the state machine as data
RUN_KINDS = ("scheduled", "manual", "backfill")
OVERLAP_POLICIES = ("allow", "skip", "buffer_one")
ONE_AT_A_TIME_POLICIES = ("skip", "buffer_one")  # overlap policies that run one fire at a time
CATCHUP_POLICIES = catchup.POLICIES  # the engine that applies them defines them
INTERVAL_SECONDS = (60, 366 * 86400)  # docs/design.md section 11
MAX_JITTER_SECONDS = 3600
PAUSED_NOTE_LENGTH = 500


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


TZ = DateTime(timezone=True)


def _principal() -> Any:
    return mapped_column(String(PRINCIPAL_LENGTH), nullable=False, server_default=LEGACY_PRINCIPAL)


class Trigger(Base):
    __tablename__ = "triggers"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(100), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    cron: Mapped[str | None] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64), nullable=False, server_default="UTC")
    run_at: Mapped[datetime | None] = mapped_column(TZ)
    start_at: Mapped[datetime | None] = mapped_column(TZ)
    end_at: Mapped[datetime | None] = mapped_column(TZ)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    action: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    overlap_policy: Mapped[str] = mapped_column(String(10), nullable=False, server_default="allow")
    catchup_policy: Mapped[str] = mapped_column(String(10), nullable=False, server_default="latest")
    catchup_window_seconds: Mapped[int] = mapped_column(
        Integer, nullable=False, server_default="3600"
    )
    max_attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="3")
    retry_backoff_seconds: Mapped[int] = mapped_column(Integer, nullable=False, server_default="10")
    timeout_seconds: Mapped[int] = mapped_column(Integer, nullable=False, server_default="60")
    # When the dispatcher claims the trigger: its next fire plus that fire's jitter (the
    # indexed due column). `next_fire_at` is the fire itself, the runs' `scheduled_for`:
    # both null, or both set (equal without jitter). A jitter change moves only next_run_at.
    next_run_at: Mapped[datetime | None] = mapped_column(TZ)
    next_fire_at: Mapped[datetime | None] = mapped_column(TZ)
    last_scheduled_for: Mapped[datetime | None] = mapped_column(TZ)
    interval_seconds: Mapped[int | None] = mapped_column(Integer)
    anchor_at: Mapped[datetime | None] = mapped_column(TZ)
    jitter_seconds: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    paused_note: Mapped[str | None] = mapped_column(String(PAUSED_NOTE_LENGTH))
    paused_at: Mapped[datetime | None] = mapped_column(TZ)
    paused_by: Mapped[str | None] = mapped_column(String(100))
    # Whom its runs act for, who created and last changed it: principals (docs/design.md
    # section 18), never keys; the default serves an older release's writes (migration 0014).
    run_as: Mapped[str] = _principal()
    created_by: Mapped[str] = _principal()
    updated_by: Mapped[str] = _principal()
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    created_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())

    __table_args__ = (
        CheckConstraint("num_nonnulls(cron, run_at, interval_seconds) = 1", name="one_schedule"),
        CheckConstraint(
            f"interval_seconds BETWEEN {INTERVAL_SECONDS[0]} AND {INTERVAL_SECONDS[1]}",
            name="interval_seconds",
        ),
        CheckConstraint(f"jitter_seconds BETWEEN 0 AND {MAX_JITTER_SECONDS}", name="jitter"),
        CheckConstraint(_in("overlap_policy", OVERLAP_POLICIES), name="overlap_policy"),
        CheckConstraint(_in("catchup_policy", CATCHUP_POLICIES), name="catchup_policy"),
        CheckConstraint("catchup_window_seconds >= 0", name="catchup_window"),
        CheckConstraint("max_attempts BETWEEN 1 AND 20", name="max_attempts"),
        CheckConstraint("retry_backoff_seconds >= 0", name="retry_backoff"),
        CheckConstraint("timeout_seconds > 0", name="timeout"),
        CheckConstraint("end_at IS NULL OR start_at IS NULL OR end_at > start_at", name="window"),
        # The dispatcher's query: enabled AND next_run_at <= now ORDER BY next_run_at.
        Index(
            "ix_triggers_due",
            "next_run_at",
            postgresql_where=text("enabled AND next_run_at IS NOT NULL"),
        ),
        Index("ix_triggers_tenant_created", "tenant_id", "created_at", "id"),
        # A tenant's due triggers, earliest first: a tick's fair shares (app/shares.py).
        Index(
            "ix_triggers_tenant_due",
            "tenant_id",
            "next_run_at",
            postgresql_where=text("enabled AND next_run_at IS NOT NULL"),
        ),
        # Admission's overlap checks join only the triggers that run one at a time.
        Index(
            "ix_triggers_one_at_a_time",
            "id",
            postgresql_where=text("overlap_policy IN ('skip', 'buffer_one')"),
        ),
    )


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    # Deliberately no foreign key: run history outlives a deleted trigger (its pending runs
    # are cancelled, its finished ones stay until retention prunes them).
    trigger_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    tenant_id: Mapped[str] = mapped_column(String(100), nullable=False)
    scheduled_for: Mapped[datetime] = mapped_column(TZ, nullable=False)
    # When the run was due (lag counts from it): a fire plus jitter, or when it was asked for.
    due_at: Mapped[datetime | None] = mapped_column(TZ, server_default=func.now())
    kind: Mapped[str] = mapped_column(String(10), nullable=False, server_default="scheduled")
    idempotency_key: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    status: Mapped[str] = mapped_column(
        String(10), nullable=False, server_default=RunStatus.PENDING.value
    )
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    enqueued_at: Mapped[datetime | None] = mapped_column(TZ)
    not_before: Mapped[datetime | None] = mapped_column(TZ)
    started_at: Mapped[datetime | None] = mapped_column(TZ)
    finished_at: Mapped[datetime | None] = mapped_column(TZ)
    heartbeat_at: Mapped[datetime | None] = mapped_column(TZ)
    # Unused since migration 0018 (`enqueued_at` is the same fact); kept for an older
    # release's writes during a deploy, dropped by migration 0019.
    admitted_at: Mapped[datetime | None] = mapped_column(TZ)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(TZ)
    worker: Mapped[str | None] = mapped_column(String(200))
    generation: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[Any | None] = mapped_column(JSONB)
    # The principal the run fired as, copied from its trigger when the run is created (null
    # only for a run an older release inserted: the runner fills it at its first attempt).
    run_as: Mapped[str | None] = mapped_column(String(PRINCIPAL_LENGTH))
    created_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())

    __table_args__ = (
        CheckConstraint(_in("status", RUN_STATUSES), name="status"),
        CheckConstraint(_in("kind", RUN_KINDS), name="kind"),
        # Exactly one scheduled run per fire, whatever number of dispatchers race.
        Index(
            "uq_runs_trigger_scheduled_for",
            "trigger_id",
            "scheduled_for",
            unique=True,
            postgresql_where=text("kind = 'scheduled'"),
        ),
        Index("ix_runs_trigger_created", "trigger_id", "created_at", "id"),
        # The recovery sweep looks only at unfinished runs.
        Index(
            "ix_runs_unfinished",
            "status",
            "enqueued_at",
            postgresql_where=text("status IN ('pending', 'admitted', 'running')"),
        ),
        # The waiting room, per tenant in fire order, without the retries: admission's
        # LATERAL (and its list of every waiting tenant, when the walk runs long).
        Index(
            "ix_runs_pending_first",
            "tenant_id",
            "scheduled_for",
            "id",
            postgresql_where=text("status = 'pending' AND not_before IS NULL"),
        ),
        # The runs waiting with no backoff (first attempts, runs taken back), in fire order:
        # admission's walk to the tenants whose turn it is; and the retries waiting, by the
        # end of their backoff (migration 0010).
        Index(
            "ix_runs_pending_fire",
            "scheduled_for",
            "tenant_id",
            postgresql_where=text("status = 'pending' AND not_before IS NULL"),
        ),
        Index(
            "ix_runs_pending_retry",
            "not_before",
            postgresql_where=text("status = 'pending' AND not_before IS NOT NULL"),
        ),
        # Each tenant's retries, by the end of their backoff: admission reads no more of
        # one tenant's than its free slots can use (migration 0012).
        Index(
            "ix_runs_retry_tenant",
            "tenant_id",
            "not_before",
            postgresql_where=text("status = 'pending' AND not_before IS NOT NULL"),
        ),
        # Slots in use, per tenant.
        Index(
            "ix_runs_in_progress",
            "tenant_id",
            postgresql_where=text("status IN ('admitted', 'running')"),
        ),
        # A trigger's waiting fires, and the runs waiting between two attempts: admission's
        # overlap statement starts from the triggers with a run in progress.
        Index(
            "ix_runs_pending_trigger",
            "trigger_id",
            "scheduled_for",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_runs_retrying",
            "trigger_id",
            postgresql_where=text("status = 'pending' AND attempt > 0"),
        ),
        Index(
            "ix_runs_finished_at",
            "finished_at",
            postgresql_where=text("finished_at IS NOT NULL"),
        ),
    )


class WaitingCount(Base):
    """A bound on a tenant's pending runs, for MAX_WAITING_RUNS_PER_TENANT (app/waiting.py):
    raised by every creator of pending runs under the row's lock, lowered only by a recount
    (`counted_at`, PostgreSQL's clock)."""

    __tablename__ = "waiting_counts"

    tenant_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    bound: Mapped[int] = mapped_column(Integer, nullable=False)
    counted_at: Mapped[datetime | None] = mapped_column(TZ)


# Wake-up numbers of would-be admitters (app/admission.py).
ADMISSION_WAKEUPS = Sequence("admission_wakeups", metadata=Base.metadata)


class SchedulerState(Base):
    __tablename__ = "scheduler_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, server_default="1")
    generation: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    deployment_id: Mapped[str | None] = mapped_column(String(200))
    restarted_at: Mapped[datetime | None] = mapped_column(TZ)
    last_tick_at: Mapped[datetime | None] = mapped_column(TZ)
    last_tick_stats: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(100), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False, server_default="")
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    # Whom the key belongs to in its tenant, and its role there (docs/design.md section 18).
    principal: Mapped[str] = _principal()
    role: Mapped[str] = mapped_column(String(10), nullable=False, server_default="member")
    created_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(TZ)
    # Console sessions of this key are valid while their cookie holds this number; signing
    # out adds one, so a copied cookie is signed out too (web/console/session.py).
    console_epoch: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")

    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role"),)


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(100), nullable=False)
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[Any | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())

    __table_args__ = (
        UniqueConstraint("tenant_id", "key"),
        Index("ix_idempotency_records_created_at", "created_at"),
    )


class WebhookSecret(Base):
    """A tenant's webhook signing secret (docs/design.md section 13). Active while not revoked and
    not past `expires_at`; the current one (no expiry) is unique per tenant."""

    __tablename__ = "webhook_secrets"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(100), nullable=False)
    # A Fernet token (app/secret_box.py), never the secret itself.
    secret_ciphertext: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(TZ, nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(TZ)
    revoked_at: Mapped[datetime | None] = mapped_column(TZ)

    __table_args__ = (
        Index("ix_webhook_secrets_tenant_created", "tenant_id", "created_at"),
        # At most one current secret per tenant: what makes ensure_first race-safe.
        Index(
            "uq_webhook_secrets_current",
            "tenant_id",
            unique=True,
            postgresql_where=text("expires_at IS NULL AND revoked_at IS NULL"),
        ),
    )
