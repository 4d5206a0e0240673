"""The audit log (issue 17): who uploaded, calibrated, started, stopped, deleted, managed users and
tokens, logged in or failed to, from which address and when. Written in a transaction of its own,
after the action (or its refusal), so that a failed action is logged too."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.account_models import AuditEntry
from backend.services.accounts import Principal

ACTIONS = (
    "login",
    "login_failed",
    "logout",
    "password_change",
    "upload",
    "calibrate",
    "start",
    "stop",
    "delete",
    "camera_add",
    "camera_update",
    "camera_snapshot",
    "user_create",
    "user_update",
    "user_delete",
    "token_create",
    "token_delete",
)


def record(
    *,
    session: Session,
    action: str,
    principal: Principal | None = None,
    username: str | None = None,
    target: str | None = None,
    ip: str | None = None,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
) -> None:
    assert action in ACTIONS, action
    session.add(
        AuditEntry(
            username=principal.username if principal else (username or None),
            role=principal.role if principal else None,
            action=action,
            target=target[:255] if target else None,
            ip=ip,
            outcome=outcome,
            detail=detail,
        )
    )


def entries(*, session: Session, limit: int, before: int | None) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    return list(session.scalars(query))
