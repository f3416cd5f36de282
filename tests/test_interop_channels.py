"""The channels domain: the Python store and the real TypeScript one (@mastra/convex) share one local
Convex server; each reads the installations and platform configs the other wrote, and both pick
and order installations alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from convex_offload.errors import InvalidInputError, InvalidRecordError
from convex_offload.store.models import iso, parse_iso
from convex_offload.store.models_channels import ChannelConfig, ChannelInstallation
from convex_offload.store.store import ConvexStore
from ts_mastra import TsError, TsMastra

T0 = datetime(2025, 6, 1, 8, 30, 15, 123000, tzinfo=UTC)
SECRET = "xoxb-very-secret-bot-token"


def installation_json(installation_id: str, platform: str, agent_id: str, **fields: Any) -> dict[str, Any]:
    """An installation as TypeScript holds it (dates as ISO strings)."""
    return {
        "id": installation_id,
        "platform": platform,
        "agentId": agent_id,
        "status": "active",
        "webhookId": f"hook-{installation_id}",
        "data": {"botToken": SECRET, "team": {"id": "T1"}, "$schema": "kept in JSON text"},
        "configHash": "h1",
        "createdAt": iso(T0),
        "updatedAt": iso(T0),
        **fields,
    }


def stamped_at_save(stamp: str) -> bool:
    """The store stamped this itself when saving, not with the T0 (in the past) the caller gave."""
    return parse_iso(stamp) > T0


# --- saveInstallation / getInstallation ----------------------------------------------------------


async def test_typescript_reads_an_installation_written_by_python(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    installation = ChannelInstallation.model_validate(
        installation_json(uid("inst"), uid("slack"), uid("agent"), status="error", error="revoked")
    )
    await store.channels.save_installation(installation)
    answer = ts.call("channels", "getInstallation", installation.id)
    assert stamped_at_save(answer["updatedAt"])
    assert answer == {**installation.to_json(), "updatedAt": answer["updatedAt"]}


async def test_python_reads_an_installation_written_by_typescript(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    written = installation_json(uid("inst"), uid("slack"), uid("agent"), status="pending")
    del written["webhookId"], written["configHash"]
    ts.call("channels", "saveInstallation", written)
    loaded = await store.channels.get_installation(written["id"])
    assert loaded is not None
    assert loaded.to_json() == ts.call("channels", "getInstallation", written["id"])
    assert loaded.to_json() == {**written, "updatedAt": loaded.to_json()["updatedAt"]}
    assert loaded.webhook_id is None
    assert stamped_at_save(loaded.to_json()["updatedAt"])


async def test_a_resave_keeps_the_first_created_at_in_both(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    written = installation_json(uid("inst"), uid("slack"), uid("agent"))
    ts.call("channels", "saveInstallation", written)
    later = {**written, "status": "error", "createdAt": iso(T0 + timedelta(days=3))}
    await store.channels.save_installation(later)
    loaded = await store.channels.get_installation(written["id"])
    assert loaded is not None
    assert (loaded.status, loaded.created_at) == ("error", T0)
    ts.call("channels", "saveInstallation", {**later, "status": "active"})
    answer = ts.call("channels", "getInstallation", written["id"])
    assert (answer["status"], answer["createdAt"]) == ("active", iso(T0))


async def test_a_missing_installation_is_none_in_both(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    missing = uid("inst")
    assert await store.channels.get_installation(missing) is None
    assert ts.call("channels", "getInstallation", missing) is None
    assert await store.channels.get_installation_by_webhook_id(missing) is None
    assert ts.call("channels", "getInstallationByWebhookId", missing) is None
    assert await store.channels.get_installation_by_agent("slack", missing) is None
    assert ts.call("channels", "getInstallationByAgent", "slack", missing) is None


async def test_installation_data_stays_out_of_reprs(store: ConvexStore, uid: Callable[[str], str]) -> None:
    installation = ChannelInstallation.model_validate(installation_json(uid("inst"), "slack", uid("agent")))
    config = ChannelConfig(platform="slack", data={"appToken": SECRET})
    for shown in (repr(installation), str(installation), repr(config), str(config), f"{[installation]}"):
        assert SECRET not in shown


async def test_bad_installation_input_is_refused_before_sending(
    store: ConvexStore, uid: Callable[[str], str]
) -> None:
    with pytest.raises(InvalidInputError, match="status"):
        await store.channels.save_installation(installation_json(uid("i"), "slack", "a", status="gone"))
    with pytest.raises(InvalidInputError, match="data"):
        await store.channels.save_installation(installation_json(uid("i"), "slack", "a", data={"x": {1, 2}}))
    with pytest.raises(InvalidInputError, match="platform"):
        await store.channels.save_config({"platform": "", "data": {}})


# --- by agent, by webhook, listInstallations -------------------------------------------------------


async def seed(ts: TsMastra, store: ConvexStore, platform: str, agent: str, prefix: str) -> list[str]:
    """Installations of one platform written alternately by each store, statuses mixed."""
    ids = []
    for n, status in enumerate(["error", "pending", "active", "pending", "active"]):
        written = installation_json(
            f"{prefix}-{n}",
            platform,
            agent if n < 4 else f"{agent}-other",
            status=status,
            webhookId=f"{prefix}-hook" if n in (1, 3) else f"{prefix}-hook-{n}",
            createdAt=iso(T0 + timedelta(minutes=(n * 3) % 5)),
        )
        if n % 2:
            ts.call("channels", "saveInstallation", written)
        else:
            await store.channels.save_installation(written)
        ids.append(written["id"])
    return ids


async def test_lookups_and_listing_answer_like_typescript(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    platform, agent, prefix = uid("slack"), uid("agent"), uid("inst")
    ids = await seed(ts, store, platform, agent, prefix)

    by_agent = await store.channels.get_installation_by_agent(platform, agent)
    assert by_agent is not None
    assert by_agent.id == ids[2]  # the only active one of this agent
    assert by_agent.to_json() == ts.call("channels", "getInstallationByAgent", platform, agent)

    by_hook = await store.channels.get_installation_by_webhook_id(f"{prefix}-hook")
    assert by_hook is not None
    assert by_hook.id == ids[3]  # of two with this webhook, the one updated last
    assert by_hook.to_json() == ts.call("channels", "getInstallationByWebhookId", f"{prefix}-hook")

    listed = await store.channels.list_installations(platform)
    assert [i.to_json() for i in listed] == ts.call("channels", "listInstallations", platform)
    assert [i.id for i in listed] == [ids[n] for n in (3, 1, 4, 2, 0)]  # newest createdAt first
    assert await store.channels.list_installations(uid("none")) == []


async def test_by_agent_prefers_pending_over_error_then_the_latest(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    platform, agent = uid("discord"), uid("agent")
    for n, status in enumerate(["error", "pending", "pending"]):
        written = installation_json(uid("inst"), platform, agent, status=status)
        if n % 2:
            ts.call("channels", "saveInstallation", written)
        else:
            await store.channels.save_installation(written)
    found = await store.channels.get_installation_by_agent(platform, agent)
    assert found is not None
    assert found.status == "pending"
    assert found.to_json() == ts.call("channels", "getInstallationByAgent", platform, agent)


# --- deleteInstallation ------------------------------------------------------------------------------


async def test_deletes_are_seen_by_the_other_store(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    first, second = (installation_json(uid("inst"), uid("slack"), uid("agent")) for _ in range(2))
    ts.call("channels", "saveInstallation", first)
    await store.channels.save_installation(second)
    await store.channels.delete_installation(first["id"])
    assert ts.call("channels", "getInstallation", first["id"]) is None
    ts.call("channels", "deleteInstallation", second["id"])
    assert await store.channels.get_installation(second["id"]) is None
    await store.channels.delete_installation(second["id"])  # already gone: nothing happens


# --- saveConfig / getConfig / deleteConfig -----------------------------------------------------------


async def test_configs_written_by_either_store_read_alike(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    py_platform, ts_platform = uid("telegram"), uid("slack")
    config = ChannelConfig(platform=py_platform, data={"parentBotToken": SECRET, "$id": 1}, updated_at=T0)
    await store.channels.save_config(config)
    assert ts.call("channels", "getConfig", py_platform) == config.to_json()

    written = {"platform": ts_platform, "data": {"appConfigToken": "t", "n": [1, 2]}, "updatedAt": iso(T0)}
    ts.call("channels", "saveConfig", written)
    loaded = await store.channels.get_config(ts_platform)
    assert loaded is not None
    assert loaded.to_json() == written == ts.call("channels", "getConfig", ts_platform)

    replaced = ChannelConfig(platform=ts_platform, data={"v": 2}, updated_at=T0 + timedelta(hours=1))
    await store.channels.save_config(replaced)
    assert ts.call("channels", "getConfig", ts_platform) == replaced.to_json()


async def test_config_deletes_are_seen_by_the_other_store(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    first, second = uid("slack"), uid("slack")
    await store.channels.save_config({"platform": first, "data": {}})
    ts.call("channels", "saveConfig", {"platform": second, "data": {}, "updatedAt": iso(T0)})
    await store.channels.delete_config(first)
    assert ts.call("channels", "getConfig", first) is None
    ts.call("channels", "deleteConfig", second)
    assert await store.channels.get_config(second) is None
    assert ts.call("channels", "getConfig", uid("none")) is None


# --- dangerouslyClearAll -------------------------------------------------------------------------------


async def test_clear_all_python_then_typescript(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    # The tables are this domain's alone, and every test here saves its own rows first.
    platform = uid("slack")
    await seed(ts, store, platform, uid("agent"), uid("inst"))
    await store.channels.save_config({"platform": platform, "data": {}})
    await store.channels.dangerously_clear_all()
    assert ts.call("channels", "listInstallations", platform) == []
    assert ts.call("channels", "getConfig", platform) is None
    await seed(ts, store, platform, uid("agent"), uid("inst"))
    ts.call("channels", "saveConfig", {"platform": platform, "data": {}, "updatedAt": iso(T0)})
    ts.call("channels", "dangerouslyClearAll")
    assert await store.channels.list_installations(platform) == []
    assert await store.channels.get_config(platform) is None


# --- rows neither store can read --------------------------------------------------------------------


async def test_an_installation_with_bad_data_json_fails_in_both(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    row: dict[str, Any] = {
        "id": uid("inst"),
        "platform": uid("slack"),
        "agentId": "a",
        "status": "active",
        "webhookId": None,
        "data": "{not json",
        "configHash": None,
        "error": None,
        "createdAt": iso(T0),
        "updatedAt": iso(T0),
    }
    await store.db.insert("mastra_channel_installations", row)
    try:
        with pytest.raises(
            InvalidRecordError, match=f"Invalid channel data JSON for installation {row['id']}"
        ):
            await store.channels.get_installation(row["id"])
        with pytest.raises(TsError, match="Invalid channel data JSON"):
            ts.call("channels", "listInstallations", row["platform"])
    finally:
        # Every listing of its platform would fail on it, in both stores.
        await store.channels.delete_installation(row["id"])
