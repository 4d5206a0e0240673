"""Login, logout and the session's user; users (admin), API tokens, the audit log (admin).

The session cookie is signed (Tornado's ``cookie_secret``), HttpOnly, SameSite=Strict and
Secure on HTTPS; it holds a random secret whose digest names a ``user_sessions`` row, so a logout,
a new password or a disabled user ends it at once (``services.accounts``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel

from backend.db.account_models import ApiToken, AuditEntry, User
from backend.handlers.base import ApiError, BaseHandler, parse_id
from backend.openapi import Operation, Response, error
from backend.schemas import (
    AuditEntryOut,
    AuditListOut,
    ErrorResponse,
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
from backend.services.formatting import utc_iso

M = TypeVar("M", bound=BaseModel)
WRONG_LOGIN = "wrong username or password"
WRONG_PASSWORD = "wrong password"

USER_404 = error("Unknown user id (user_not_found)")
TOKEN_404 = error("Unknown token id, or another user's (token_not_found)")
LAST_ADMIN_409 = error("It would leave no enabled admin (last_admin)")
AUDIT_QUERY = (
    {
        "name": "limit",
        "in": "query",
        "description": "at most this many entries (default 100)",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
    },
    {
        "name": "before",
        "in": "query",
        "description": "only entries older than this id (the next page: the last id seen)",
        "schema": {"type": "integer", "minimum": 1},
    },
)


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
    openapi = {
        "POST": Operation(
            "Log in: sets the session cookie",
            {
                200: Response(
                    "Logged in",
                    LoginOut,
                    headers=(
                        (
                            "Set-Cookie",
                            "traffic_session: signed, HttpOnly, SameSite=Strict, Path=/ (Secure on HTTPS)",
                        ),
                    ),
                ),
                400: error("Malformed JSON (invalid_json) or body (invalid_body)"),
                401: error(
                    "Wrong username or password, or the user is disabled (invalid_credentials; the "
                    "same answer for an unknown user)"
                ),
                429: Response(
                    "Too many failed logins from this address within a minute (too_many_attempts)",
                    ErrorResponse,
                    headers=(("Retry-After", "seconds until a login is accepted again"),),
                ),
            },
            request=LoginIn,
            description="Failed logins are counted per client address: after "
            "LOGIN_FAILURES_PER_MINUTE of them, 429 until the minute ends. Every login and failed "
            "login is audited.",
            operation_id="login",
        )
    }

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
    openapi = {
        "POST": Operation(
            "Log out: ends the session (if any) and clears the cookie",
            {204: Response("Logged out")},
            operation_id="logout",
        )
    }

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
    openapi = {
        "POST": Operation(
            "Change the caller's own password",
            {
                204: Response(
                    "Changed: every session of the user ended; with the session cookie, a fresh one",
                    headers=(
                        (
                            "Set-Cookie",
                            "only when the request came with the session cookie: traffic_session of "
                            "a new session (signed, HttpOnly, SameSite=Strict, Path=/; Secure on HTTPS)",
                        ),
                    ),
                ),
                400: error(
                    "Malformed JSON or body: new_password 12 characters at least, not the current "
                    "password (invalid_json, invalid_body)"
                ),
                401: error(
                    "current_password is wrong (invalid_credentials); or no credentials, or a "
                    "session or API token that is not valid (unauthorized)"
                ),
                429: Response(
                    "Too many failed logins (or wrong current passwords) from this address within a "
                    "minute (too_many_attempts)",
                    ErrorResponse,
                    headers=(("Retry-After", "seconds until an attempt is accepted again"),),
                ),
            },
            request=PasswordChangeIn,
            description="Any logged-in user, with the session cookie or an API token. A wrong "
            "current password counts as a failed login of the address (LOGIN_FAILURES_PER_MINUTE, "
            "then 429 until the minute ends). The new password logs the user out everywhere (API "
            "tokens stay valid); a request with the session cookie gets a new session in its place. "
            "Audited (password_change).",
            operation_id="changePassword",
        )
    }

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
    openapi = {
        "GET": Operation(
            "The caller", {200: Response("The logged-in user", SessionUserOut)}, operation_id="me"
        )
    }

    def get(self) -> None:
        p = self.principal
        assert p is not None
        self.send_model(SessionUserOut(id=p.user_id, username=p.username, role=p.role))


class UsersHandler(AccountBase):
    access = {"GET": "admin", "POST": "admin"}
    openapi = {
        "GET": Operation("List users", {200: Response("Users", UserListOut)}, operation_id="listUsers"),
        "POST": Operation(
            "Create a user",
            {
                201: Response("Created", UserOut),
                400: error(
                    "Malformed JSON or body: username 1-64 of A-Z a-z 0-9 _ . @ -, password 12 "
                    "characters at least, role viewer, operator or admin (invalid_json, invalid_body)"
                ),
                409: error("A user of that name exists (user_exists)"),
            },
            request=UserIn,
            operation_id="createUser",
        ),
    }

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
    path_params = ("user_id",)
    openapi = {
        "PUT": Operation(
            "Change a user's role, password or disabled flag",
            {
                200: Response("Updated", UserOut),
                400: error("Malformed JSON or body (invalid_json, invalid_body)"),
                404: USER_404,
                409: LAST_ADMIN_409,
            },
            request=UserUpdateIn,
            description="A new password or disabling the user ends its sessions; disabling it also "
            "revokes its API tokens.",
            operation_id="updateUser",
        ),
        "DELETE": Operation(
            "Delete a user (its sessions and API tokens with it)",
            {204: Response("Deleted"), 404: USER_404, 409: LAST_ADMIN_409},
            operation_id="deleteUser",
        ),
    }

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
    openapi = {
        "GET": Operation(
            "The caller's API tokens (an admin's list: everyone's)",
            {200: Response("Tokens (never their secret)", TokenListOut)},
            operation_id="listTokens",
        ),
        "POST": Operation(
            "A new API token of the caller (it acts with the caller's role)",
            {
                201: Response("Created: the secret is in this answer only", TokenCreatedOut),
                400: error("Malformed JSON or body (invalid_json, invalid_body)"),
            },
            request=TokenIn,
            operation_id="createToken",
        ),
    }

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
    path_params = ("token_id",)
    openapi = {
        "DELETE": Operation(
            "Revoke an API token (one's own; an admin: any)",
            {204: Response("Revoked"), 404: TOKEN_404},
            operation_id="revokeToken",
        )
    }

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
    openapi = {
        "GET": Operation(
            "The audit log, newest first",
            {
                200: Response("Entries", AuditListOut),
                400: error("limit not in [1, 1000] (invalid_limit), before not an id (invalid_before)"),
            },
            query=AUDIT_QUERY,
            description="Logins and failed logins, uploads, calibrations, starts, stops, deletions, "
            "camera, user and token changes: who, with which role, from which address, and whether "
            "it was refused.",
            operation_id="listAudit",
        )
    }

    async def get(self) -> None:
        raw_limit = self.get_query_argument("limit", "100")
        raw_before = self.get_query_argument("before", None)
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
            raise ApiError(400, "invalid_limit", "limit must be an integer in [1, 1000]", field="limit")
        if raw_before is not None and (not raw_before.isdigit() or len(raw_before) > 10):
            raise ApiError(400, "invalid_before", "before must be an audit entry id", field="before")
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
