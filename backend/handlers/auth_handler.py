"""Login, logout and the session's user; users (admin), API tokens, the audit log (admin).

The session cookie is signed (Tornado's ``cookie_secret``), HttpOnly, SameSite=Strict and
Secure on HTTPS; it holds a random secret whose digest names a ``user_sessions`` row, so a logout,
a new password or a disabled user ends it at once (``services.accounts``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from backend.db.account_models import ApiToken, AuditEntry, User
from backend.db.models import utc_iso
from backend.handlers.base import ApiError, BaseHandler, parse_id
from backend.schemas import (
    AuditEntryOut,
    AuditListOut,
    LoginIn,
    LoginOut,
    PasswordChangeIn,
    SessionUserOut,
    TokenCreatedOut,
    TokenIn,
    TokenListOut,
    TokenOut,
    UserIn,
    UserListOut,
    UserOut,
    UserUpdateIn,
    error_body,
)
from backend.services import accounts, audit
from backend.services.access import PUBLIC, SESSION_COOKIE

M = TypeVar("M", bound=BaseModel)
WRONG_LOGIN = "wrong username or password"
WRONG_PASSWORD = "wrong password"


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        role=user.role,
        created_at=utc_iso(user.created_at) or "",
        disabled=user.disabled,
    )


def token_out(token: ApiToken, username: str) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "prefix": token.prefix,
        "username": username,
        "created_at": utc_iso(token.created_at) or "",
        "last_used_at": utc_iso(token.last_used_at),
    }


def entry_out(entry: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(
        id=entry.id,
        at=utc_iso(entry.at) or "",
        username=entry.username,
        role=entry.role,
        action=entry.action,
        target=entry.target,
        ip=entry.ip,
        outcome=entry.outcome,
        detail=entry.detail,
    )


class AccountBase(BaseHandler):
    def body_of(self, model: type[M]) -> M:
        try:
            return model.model_validate(self.json_body())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise ApiError(400, "invalid_body", f"{where}: {first['msg']}") from exc

    def set_session_cookie(self, secret: str) -> None:
        self.set_signed_cookie(
            SESSION_COOKIE,
            secret,
            expires_days=self.application.config.SESSION_TTL_H / 24,
            httponly=True,
            secure=self.request.protocol == "https",
            samesite="Strict",
            path="/",
        )


class LoginHandler(AccountBase):
    """``POST /api/auth/login``: 200 and the cookie; 401 ``invalid_credentials`` for a wrong user
    and a wrong password alike (as slow: a dummy hash is verified); 429 ``too_many_attempts``
    after ``LOGIN_FAILURES_PER_MINUTE`` failures from the address."""

    access = {"POST": PUBLIC}

    async def post(self) -> None:
        app, ip = self.application, self.client_ip
        wait = await app.login_limiter.retry_after(ip)
        if wait:
            await self.audit("login_failed", outcome="refused", detail={"reason": "rate limited"})
            # answered here, not raised: send_error clears the headers, Retry-After with them
            self.set_header("Retry-After", str(wait))
            message = f"too many failed logins from {ip}: try again in {wait} s"
            self.send_json(error_body("too_many_attempts", message), 429)
            return
        body = self.body_of(LoginIn)
        ttl = timedelta(hours=app.config.SESSION_TTL_H)

        def login(session: Any) -> tuple[User, str] | None:
            user = accounts.verify_login(session=session, username=body.username, password=body.password)
            if user is None:
                return None
            return user, accounts.open_session(session=session, user=user, ttl=ttl, ip=ip)

        found = await app.db.run(login)
        if found is None:
            await app.login_limiter.failed(ip)
            await self.audit("login_failed", username=body.username[:64], outcome="refused")
            raise ApiError(401, "invalid_credentials", WRONG_LOGIN)
        user, secret = found
        self.set_session_cookie(secret)
        self.principal = accounts.Principal(user.id, user.username, user.role, "session", 0)
        await self.audit("login")
        me = SessionUserOut(id=user.id, username=user.username, role=user.role)
        self.send_model(LoginOut(user=me))


class LogoutHandler(AccountBase):
    """``POST /api/auth/logout``: ends the session (if any) and clears the cookie; 204."""

    access = {"POST": PUBLIC}

    async def post(self) -> None:
        raw = self.get_signed_cookie(SESSION_COOKIE)
        if raw:
            secret = raw.decode()

            def close(session: Any) -> accounts.Principal | None:  # who it was, in one transaction
                principal = accounts.session_principal(session=session, secret=secret)
                accounts.close_session(session=session, secret=secret)
                return principal

            principal = await self.application.db.run(close)
            if principal is not None:
                self.principal = principal
                await self.audit("logout")
        self.clear_cookie(SESSION_COOKIE, path="/")
        self.set_status(204)
        self.finish()


class PasswordHandler(AccountBase):
    """``POST /api/auth/password``: the caller's own new password (``current_password``,
    ``new_password``); 204. A wrong current password is 401 ``invalid_credentials`` and counts as
    a failed login of the address (429 ``too_many_attempts`` over the limit). The new password
    ends every session of the user; a caller that came with the session cookie gets a fresh one,
    so that this page stays logged in."""

    access = {"POST": "viewer"}

    async def post(self) -> None:
        app, ip, p = self.application, self.client_ip, self.principal
        assert p is not None
        wait = await app.login_limiter.retry_after(ip)
        if wait:
            await self.audit(
                "password_change", p.username, outcome="refused", detail={"reason": "rate limited"}
            )
            # answered here, not raised: send_error clears the headers, Retry-After with them
            self.set_header("Retry-After", str(wait))
            message = f"too many failed logins from {ip}: try again in {wait} s"
            self.send_json(error_body("too_many_attempts", message), 429)
            return
        body = self.body_of(PasswordChangeIn)
        ttl = timedelta(hours=app.config.SESSION_TTL_H)
        via_cookie = p.via == "session"

        def change(session: Any) -> tuple[User, str | None] | None:
            user = accounts.change_password(
                session=session, user_id=p.user_id, current=body.current_password, new=body.new_password
            )
            if user is None:
                return None
            secret = accounts.open_session(session=session, user=user, ttl=ttl, ip=ip) if via_cookie else None
            return user, secret

        changed = await app.db.run(change)
        if changed is None:
            await app.login_limiter.failed(ip)
            await self.audit(
                "password_change", p.username, outcome="refused", detail={"reason": "wrong password"}
            )
            raise ApiError(401, "invalid_credentials", WRONG_PASSWORD)
        _, secret = changed
        if secret is not None:
            self.set_session_cookie(secret)
        await self.audit("password_change", p.username, detail={"via": p.via})
        self.set_status(204)
        self.finish()


class MeHandler(AccountBase):
    """``GET /api/auth/me``: the caller (session or token); 401 when not logged in."""

    access = {"GET": "viewer"}

    def get(self) -> None:
        p = self.principal
        assert p is not None
        self.send_model(SessionUserOut(id=p.user_id, username=p.username, role=p.role))


class UsersHandler(AccountBase):
    access = {"GET": "admin", "POST": "admin"}

    async def get(self) -> None:
        users = await self.application.db.run(lambda s: accounts.list_users(session=s))
        self.send_model(UserListOut(users=[user_out(u) for u in users]))

    async def post(self) -> None:
        body = self.body_of(UserIn)
        user = await self.application.db.run(
            lambda s: accounts.create_user(
                session=s, username=body.username, password=body.password, role=body.role
            )
        )
        await self.audit("user_create", user.username, detail={"role": user.role})
        self.send_model(user_out(user), 201)


class UserHandler(AccountBase):
    access = {"PUT": "admin", "DELETE": "admin"}

    async def put(self, raw_id: str) -> None:
        user_id = parse_id(raw_id, "user_not_found", "user")
        body = self.body_of(UserUpdateIn)
        user = await self.application.db.run(
            lambda s: accounts.update_user(
                session=s, user_id=user_id, role=body.role, password=body.password, disabled=body.disabled
            )
        )
        changed = sorted(body.model_dump(exclude_unset=True))
        await self.audit("user_update", user.username, detail={"changed": changed, "role": user.role})
        self.send_model(user_out(user))

    async def delete(self, raw_id: str) -> None:
        user_id = parse_id(raw_id, "user_not_found", "user")
        user = await self.application.db.run(lambda s: accounts.delete_user(session=s, user_id=user_id))
        await self.audit("user_delete", user.username)
        self.set_status(204)
        self.finish()


class TokensHandler(AccountBase):
    """The caller's API tokens (an admin's list shows everyone's)."""

    access = {"GET": "viewer", "POST": "viewer"}

    async def get(self) -> None:
        p = self.principal
        assert p is not None
        owner = None if p.may("admin") else p.user_id
        rows = await self.application.db.run(lambda s: accounts.list_tokens(session=s, user_id=owner))
        self.send_model(TokenListOut(tokens=[TokenOut.model_validate(token_out(t, n)) for t, n in rows]))

    async def post(self) -> None:
        p = self.principal
        assert p is not None
        body = self.body_of(TokenIn)
        token, secret = await self.application.db.run(
            lambda s: accounts.create_token(session=s, user_id=p.user_id, name=body.name)
        )
        await self.audit("token_create", f"{token.prefix}… ({token.name})")
        self.send_model(
            TokenCreatedOut.model_validate({**token_out(token, p.username), "token": secret}), 201
        )


class TokenHandler(AccountBase):
    access = {"DELETE": "viewer"}

    async def delete(self, raw_id: str) -> None:
        p = self.principal
        assert p is not None
        token_id = parse_id(raw_id, "token_not_found", "token")
        owner = None if p.may("admin") else p.user_id
        token = await self.application.db.run(
            lambda s: accounts.delete_token(session=s, token_id=token_id, user_id=owner)
        )
        await self.audit("token_delete", f"{token.prefix}… ({token.name})")
        self.set_status(204)
        self.finish()


class AuditHandler(AccountBase):
    """``GET /api/audit?limit=100&before=<id>`` (admin): newest first."""

    access = {"GET": "admin"}

    async def get(self) -> None:
        raw_limit = self.get_query_argument("limit", "100")
        raw_before = self.get_query_argument("before", None)
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
            raise ApiError(400, "invalid_limit", "limit must be an integer in [1, 1000]")
        if raw_before is not None and (not raw_before.isdigit() or len(raw_before) > 10):
            raise ApiError(400, "invalid_before", "before must be an audit entry id")
        limit, before = int(raw_limit), int(raw_before) if raw_before else None
        rows = await self.application.db.run(lambda s: audit.entries(session=s, limit=limit, before=before))
        self.send_model(AuditListOut(entries=[entry_out(e) for e in rows]))


routes: list[tuple[str, Any]] = [
    (r"/api/auth/login", LoginHandler),
    (r"/api/auth/logout", LogoutHandler),
    (r"/api/auth/me", MeHandler),
    (r"/api/auth/password", PasswordHandler),
    (r"/api/users", UsersHandler),
    (r"/api/users/([^/]+)", UserHandler),
    (r"/api/tokens", TokensHandler),
    (r"/api/tokens/([^/]+)", TokenHandler),
    (r"/api/audit", AuditHandler),
]
