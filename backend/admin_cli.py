"""``traffic-admin``: operator accounts from the command line (issue 17), against DATABASE_URL.

    traffic-admin create-user NAME --role viewer|operator|admin   (password generated, or --password-stdin)
    traffic-admin reset-password NAME                             (prints a new generated password)
    traffic-admin create-token NAME --token-name scripts          (prints the token: shown once)
    traffic-admin list-users
    traffic-admin ensure-admin                                    (first start: admin + password)

Passwords and tokens are printed once on stdout and stored only hashed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from backend.db.account_models import ROLES
from backend.services import accounts, audit
from backend.services.errors import ServiceError
from backend.settings import Settings
from contracts.settings import sqlalchemy_url

T = TypeVar("T")


def in_transaction(url: str, fn: Callable[[Session], T]) -> T:
    engine = create_engine(sqlalchemy_url(url))  # --database-url as DATABASE_URL accepts it
    try:
        with sessionmaker(engine)() as session, session.begin():
            return fn(session)
    finally:
        engine.dispose()


def _user(session: Session, name: str) -> Any:
    user = accounts.find_user(session=session, username=name)
    if user is None:
        raise ServiceError(404, "user_not_found", f"no user named {name!r}")
    return user


def run(args: argparse.Namespace, url: str) -> str:
    """What the command prints (a password, a token, a table)."""
    if args.command == "create-user":
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else accounts.generate_password()

        def create(s: Session) -> str:
            accounts.create_user(session=s, username=args.name, password=password, role=args.role)
            audit.record(session=s, action="user_create", username="traffic-admin", target=args.name)
            return password

        return in_transaction(url, create)
    if args.command == "reset-password":
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else accounts.generate_password()

        def reset(s: Session) -> str:
            accounts.update_user(session=s, user_id=_user(s, args.name).id, password=password)
            audit.record(session=s, action="user_update", username="traffic-admin", target=args.name)
            return password

        return in_transaction(url, reset)
    if args.command == "create-token":

        def token(s: Session) -> str:
            row, secret = accounts.create_token(
                session=s, user_id=_user(s, args.name).id, name=args.token_name
            )
            audit.record(session=s, action="token_create", username="traffic-admin", target=args.name)
            return secret

        return in_transaction(url, token)
    if args.command == "ensure-admin":
        password = in_transaction(url, lambda s: accounts.ensure_admin(session=s))
        return password or ""
    users = in_transaction(
        url, lambda s: [(u.username, u.role, u.disabled) for u in accounts.list_users(session=s)]
    )
    return "\n".join("\t".join([name, role] + (["disabled"] if off else [])) for name, role, off in users)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="traffic-admin", description=__doc__.split("\n")[0])
    p.add_argument("--database-url", help="default: DATABASE_URL (environment or .env)")
    sub = p.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-user", help="a new user; prints its generated password")
    create.add_argument("name")
    create.add_argument("--role", choices=ROLES, required=True)
    create.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    reset = sub.add_parser("reset-password", help="a new password (logs the user out everywhere)")
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true")
    token = sub.add_parser("create-token", help="a new API token of the user; prints it once")
    token.add_argument("name")
    token.add_argument("--token-name", default="cli")
    sub.add_parser("list-users")
    sub.add_parser("ensure-admin", help="on a database without users: admin + printed password")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    url = args.database_url or Settings().DATABASE_URL
    try:
        out = run(args, url)
    except ServiceError as exc:
        print(f"traffic-admin: {exc.message}", file=sys.stderr)
        return 1
    if out:
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
