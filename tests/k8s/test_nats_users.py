"""The chart's NATS users are the permission table's (fairprice.common.nats_permissions): the
configuration file it ships, the Secret's keys, the NATS pod's variables and each service's
own user all come from it."""

from __future__ import annotations

from fairprice.common.nats_config import CHART_USERS, chart_users, password_variable
from fairprice.common.nats_permissions import Role

from .conftest import RELEASE, SERVICES, by_kind, render_chart


def _env(workload: dict[str, object]) -> dict[str, object]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]  # type: ignore[index]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_chart_users_file_is_rendered_from_the_permission_table() -> None:
    assert CHART_USERS.read_text() == chart_users(), (
        "run `uv run python -m fairprice.common.nats_config` to write it again"
    )


def test_nats_gets_every_users_password_from_the_secret_and_each_service_its_own() -> None:
    docs = render_chart({"api": {"enabled": True}})
    secret = by_kind(docs, "Secret")[f"{RELEASE}-nats-users"]
    assert set(secret["data"]) == {role.value for role in Role}
    config = by_kind(docs, "ConfigMap")[f"{RELEASE}-nats"]["data"]
    assert config["nats-users.conf"] == CHART_USERS.read_text()
    assert "include ./nats-users.conf" in config["nats.conf"]
    nats = _env(by_kind(docs, "StatefulSet")[f"{RELEASE}-nats"])
    for role in Role:
        assert nats[password_variable(role)] == {
            "secretKeyRef": {"name": f"{RELEASE}-nats-users", "key": role.value}
        }
    for service in SERVICES:
        env = _env(by_kind(docs, "Deployment")[f"{RELEASE}-{service}"])
        assert env["FAIRPRICE_NATS__USER"] == service
        assert env["FAIRPRICE_NATS__PASSWORD"] == {
            "secretKeyRef": {"name": f"{RELEASE}-nats-users", "key": service}
        }


def test_an_existing_secret_replaces_the_generated_one() -> None:
    docs = render_chart({"nats": {"auth": {"existingSecret": "my-nats-users"}}})
    assert f"{RELEASE}-nats-users" not in by_kind(docs, "Secret")
    env = _env(by_kind(docs, "Deployment")[f"{RELEASE}-crawler"])
    assert env["FAIRPRICE_NATS__PASSWORD"] == {
        "secretKeyRef": {"name": "my-nats-users", "key": "crawler"}
    }
