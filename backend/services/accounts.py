"""Operator accounts (issue 17): users with a role, passwords hashed with Argon2id, login sessions
and API tokens. A session's or a token's secret is random (``secrets.token_urlsafe``) and only its
SHA-256 digest is stored, so a copy of the database logs nobody in.

Functions take a SQLAlchemy ``Session`` (run them with ``Database.run``); they raise
``ServiceError`` with the API's codes."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from backend.db.account_models import ROLES, ApiToken, User, UserSession
from backend.services.errors import ServiceError

HASHER = PasswordHasher()  # Argon2id with argon2-cffi's RFC 9106 "low memory" profile
USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 12
TOKEN_PREFIX = "tms_"
# Verified when the user does not exist, so that a wrong user and a wrong password take as long.
_DUMMY_HASH = HASHER.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Principal:
    """Who makes a request: the user, its role, and how it proved it ("session" or "token")."""

    user_id: int
    username: str
    role: str
    via: str
    credential_id: int

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_password() -> str:
    return secrets.token_urlsafe(18)  # 24 characters, 144 bits


def check_username(username: str) -> str:
    if not isinstance(username, str) or not USERNAME.match(username):
        raise ServiceError(400, "invalid_body", "username: 1-64 letters, digits or _ . @ -", field="username")
    return username


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD or len(password) > 1024:
        raise ServiceError(
            400, "invalid_body", f"password: at least {MIN_PASSWORD} characters", field="password"
        )
    return password


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ServiceError(400, "invalid_body", f"role: one of {', '.join(ROLES)}", field="role")
    return role


# ---- users --------------------------------------------------------------------------------------


def create_user(*, session: Session, username: str, password: str, role: str) -> User:
    check_username(username)
    check_password(password)
    check_role(role)
    if session.scalar(select(User.id).where(func.lower(User.username) == username.lower())) is not None:
        raise ServiceError(409, "user_exists", f"a user named {username!r} exists")
    user = User(username=username, password_hash=HASHER.hash(password), role=role, disabled=False)
    session.add(user)
    session.flush()
    return user


def get_user(*, session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise ServiceError(404, "user_not_found", f"no user with id {user_id}")
    return user


def find_user(*, session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(func.lower(User.username) == username.lower()))


def list_users(*, session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def _enabled_admins(session: Session) -> int:
    return session.scalar(select(func.count()).where(User.role == "admin", User.disabled.is_(False))) or 0


def update_user(
    *,
    session: Session,
    user_id: int,
    role: str | None = None,
    password: str | None = None,
    disabled: bool | None = None,
) -> User:
    user = get_user(session=session, user_id=user_id)
    was_admin = user.role == "admin" and not user.disabled
    if role is not None:
        user.role = check_role(role)
    if disabled is not None:
        user.disabled = disabled
    if password is not None:
        user.password_hash = HASHER.hash(check_password(password))
    session.flush()
    if was_admin and _enabled_admins(session) == 0:
        raise ServiceError(409, "last_admin", "this would leave no enabled admin")
    if password is not None or user.disabled:  # a new password or a disabled user: log out everywhere
        session.execute(delete(UserSession).where(UserSession.user_id == user.id))
    if user.disabled:
        session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
    return user


def change_password(*, session: Session, user_id: int, current: str, new: str) -> User | None:
    """The user's own new password (``POST /api/auth/password``): None when ``current`` is not the
    user's password; 400 when ``new`` is the same. Like every new password it ends all the user's
    sessions (``update_user``): the caller opens a fresh one for itself."""
    if new == current:
        raise ServiceError(
            400, "invalid_body", "new_password: the same as the current password", field="new_password"
        )
    user = get_user(session=session, user_id=user_id)
    try:
        HASHER.verify(user.password_hash, current)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    return update_user(session=session, user_id=user_id, password=new)


def delete_user(*, session: Session, user_id: int) -> User:
    user = get_user(session=session, user_id=user_id)
    session.delete(user)
    session.flush()
    if user.role == "admin" and _enabled_admins(session) == 0:
        raise ServiceError(409, "last_admin", "this would leave no enabled admin")
    return user


def verify_login(*, session: Session, username: str, password: str) -> User | None:
    """The user when the password is right (and the user enabled), else None; as slow either way."""
    user = find_user(session=session, username=username) if isinstance(username, str) else None
    try:
        HASHER.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if user is None or user.disabled:
        return None
    if HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = HASHER.hash(password)
    return user


def ensure_admin(*, session: Session, username: str = "admin") -> str | None:
    """On a database without users: create ``username`` as admin with a generated password and
    return it (to be shown once); None when there are users already."""
    if session.scalar(select(func.count()).select_from(User)):
        return None
    password = generate_password()
    create_user(session=session, username=username, password=password, role="admin")
    return password


# ---- sessions -----------------------------------------------------------------------------------


def open_session(*, session: Session, user: User, ttl: timedelta, ip: str | None) -> str:
    secret = secrets.token_urlsafe(32)
    session.add(UserSession(user_id=user.id, secret_hash=digest(secret), expires_at=now() + ttl, ip=ip))
    session.execute(delete(UserSession).where(UserSession.expires_at < now()))  # housekeeping
    return secret


def close_session(*, session: Session, secret: str) -> None:
    session.execute(delete(UserSession).where(UserSession.secret_hash == digest(secret)))


def session_principal(*, session: Session, secret: str) -> Principal | None:
    row = session.execute(
        select(UserSession.id, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.secret_hash == digest(secret), UserSession.expires_at > now())
    ).first()
    if row is None or row[1].disabled:
        return None
    user = row[1]
    return Principal(user.id, user.username, user.role, "session", row[0])


# ---- API tokens ---------------------------------------------------------------------------------


def create_token(*, session: Session, user_id: int, name: str) -> tuple[ApiToken, str]:
    """A new token of the user: (its row, the secret, to be shown this once)."""
    name = (name or "").strip() if isinstance(name, str) else ""
    if not name or len(name) > 100:
        raise ServiceError(400, "invalid_body", "name: 1-100 characters", field="name")
    get_user(session=session, user_id=user_id)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user_id, name=name, prefix=secret[:8], secret_hash=digest(secret))
    session.add(token)
    session.flush()
    return token, secret


def list_tokens(*, session: Session, user_id: int | None) -> list[tuple[ApiToken, str]]:
    """(token, owner's name) of one user, or of everyone when ``user_id`` is None."""
    query = select(ApiToken, User.username).join(User, User.id == ApiToken.user_id).order_by(ApiToken.id)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    return [(t, name) for t, name in session.execute(query)]


def delete_token(*, session: Session, token_id: int, user_id: int | None) -> ApiToken:
    """Revoke a token of ``user_id`` (any user's when None)."""
    token = session.get(ApiToken, token_id)
    if token is None or (user_id is not None and token.user_id != user_id):
        raise ServiceError(404, "token_not_found", f"no token with id {token_id}")
    session.delete(token)
    return token


def token_principal(*, session: Session, secret: str) -> Principal | None:
    if not secret.startswith(TOKEN_PREFIX):
        return None
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.secret_hash == digest(secret))
    ).first()
    if row is None or row[1].disabled:
        return None
    token, user = row
    stamp = now()
    if token.last_used_at is None or stamp - token.last_used_at > timedelta(minutes=1):
        token.last_used_at = stamp
    return Principal(user.id, user.username, user.role, "token", token.id)
