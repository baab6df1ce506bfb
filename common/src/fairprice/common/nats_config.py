"""The nats-server configuration that holds fairprice's users, and optionally TLS.

``server_config(passwords)`` renders an ``authorization`` block with one user per service
(``fairprice.common.nats_permissions``) and, for tests and benchmarks only, users with every
right (``admins``). nats-server's configuration format accepts JSON values, so every string is
written with ``json.dumps`` (a password may hold any character).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fairprice.common.nats_permissions import Role, permissions

__all__ = [
    "CHART_USERS",
    "LocalUsers",
    "TlsFiles",
    "chart_users",
    "local_users",
    "password_variable",
    "server_config",
    "user_entry",
]


@dataclass(frozen=True)
class TlsFiles:
    """The server's certificate and key (PEM files) for client connections."""

    cert: Path
    key: Path


def user_entry(role: Role, password: str) -> dict[str, object]:
    """One user of the ``authorization.users`` list, with its role's permissions."""
    allowed = permissions(role)
    return {
        "user": role.value,
        "password": password,
        "permissions": {
            "publish": {"allow": list(allowed.publish)},
            "subscribe": {"allow": list(allowed.subscribe)},
        },
    }


def server_config(
    passwords: Mapping[Role, str],
    *,
    admins: Mapping[str, str] | None = None,
    tls: TlsFiles | None = None,
) -> str:
    """The configuration file's text: the users of ``passwords``, ``admins`` (user ->
    password, every right), and TLS required of every client when ``tls`` is given."""
    users: list[dict[str, object]] = [user_entry(r, p) for r, p in passwords.items()]
    users += [{"user": user, "password": password} for user, password in (admins or {}).items()]
    lines = [f"authorization {{ users: {json.dumps(users)} }}"]
    if tls is not None:
        lines.append(
            f"tls {{ cert_file: {json.dumps(str(tls.cert))}, "
            f"key_file: {json.dumps(str(tls.key))} }}"
        )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class LocalUsers:
    """A local server's configuration and its users' passwords (user -> password)."""

    config: str
    passwords: dict[str, str]


def local_users(
    *,
    admins: tuple[str, ...] = (),
    viewer_password: str | None = None,
    tls: TlsFiles | None = None,
) -> LocalUsers:
    """Every role with a fresh random password (the viewer's ``viewer_password`` when given:
    the one ``fairprice status``/``top`` find in the configuration), plus ``admins`` (tests'
    and benchmarks' own clients, every right), for a local run's or a test's server."""
    passwords = {role: secrets.token_urlsafe(18) for role in Role}
    if viewer_password is not None:
        passwords[Role.VIEWER] = viewer_password
    admin_passwords = {admin: secrets.token_urlsafe(18) for admin in admins}
    return LocalUsers(
        config=server_config(passwords, admins=admin_passwords, tls=tls),
        passwords={role.value: p for role, p in passwords.items()} | admin_passwords,
    )


CHART_USERS = Path(__file__).resolve().parents[4] / "k8s" / "base" / "config" / "nats-users.conf"
"""A cluster's NATS users (kustomize's base; the chart links it from ``files/``):
``chart_users()``, written by ``python -m fairprice.common.nats_config``; a test fails when it
differs."""


def password_variable(role: Role) -> str:
    """The environment variable of the NATS pod that holds ``role``'s password (from the
    Secret), which nats-server resolves in its configuration (``$NATS_CRAWLER_PASSWORD``)."""
    return f"NATS_{role.name}_PASSWORD"


_GENERATED = (
    "# Generated from fairprice.common.nats_permissions (python -m fairprice.common.nats_config);\n"
    "# do not edit. Each password comes from the NATS pod's environment (the Secret).\n"
)


def chart_users() -> str:
    """The ``authorization`` block of a cluster's nats-server: every role, each password a
    reference to its environment variable, never the password itself."""
    entries = []
    for role in Role:
        entry = user_entry(role, "")
        entry["password"] = None  # placeholder: a variable reference is no JSON value
        reference = f'"password": ${password_variable(role)}'
        entries.append("    " + json.dumps(entry).replace('"password": null', reference))
    users = ",\n".join(entries)
    return f"{_GENERATED}authorization {{\n  users: [\n{users}\n  ]\n}}\n"


if __name__ == "__main__":
    CHART_USERS.write_text(chart_users())
    print(f"wrote {CHART_USERS}")
