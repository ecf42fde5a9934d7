"""The exit rule, one rule on both sides (issue 15): the same codes at an exit get the same verdict
from the server (``POST /v1/validate``) and from a scanner's offline gate synced from it.

The scanner used to let out every genuine code of its event offline, while the server refused
the exit of a ticket not on the list (``not_found``) and of a code newer than the issuer's record
(``invalid_code``). Both now decide by ``shared.rules.refusal``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from scanner_app.core.gate import Gate
from scanner_app.core.store import LocalStore
from scanner_app.core.store.cache import apply_changes
from scanner_app.core.store.state import (
    Enrollment,
    GateSettings,
    merge_keys,
    save_enrollment,
    save_event,
    save_settings,
)
from shared import wire
from shared.clock import ManualClock
from shared.domain import Direction, VerdictReason, VerdictResult
from shared.ids import new_id
from shared.ticket_code import issue_code
from sync_server.settings import Settings
from tests.sync_server.conftest import TenantHandle
from tests.sync_server.helpers import (
    Client,
    DeviceHandle,
    buy,
    create_event,
    create_ticket_type,
    enrolled_device,
    issuer_ring,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
def scanner_store(tmp_path: Path) -> Iterator[LocalStore]:
    store = LocalStore.open(tmp_path / "scanner")
    yield store
    store.close()


async def _synced_gate(
    client: Client, device: DeviceHandle, store: LocalStore, tenant: TenantHandle
) -> Gate:
    """A scanner of ``device``'s gate with what a sync brings (event, keys, the ticket list),
    deciding offline."""
    me = msgspec.json.decode(
        (await client.get("/v1/devices/me", headers=device.headers)).content, type=wire.DeviceSelf
    )
    page = msgspec.json.decode(
        (await client.get("/v1/sync/changes", headers=device.headers)).content,
        type=wire.ChangesPage,
    )
    assert not page.has_more
    now = datetime.now(UTC)
    with store.write() as conn:
        save_enrollment(
            conn,
            Enrollment(
                device_id=me.device_id,
                name=me.name,
                server_url="",  # decides offline: no online check
                tenant_id=tenant.id,
                event_id=me.event_id,
                gate=me.gate,
                enrolled_at=now,
            ),
        )
        save_event(conn, me.event)
        merge_keys(conn, me.keys, now)
        save_settings(conn, GateSettings(debounce_seconds=0))
        apply_changes(conn, store.sealer, list(page.changes), now)
    return Gate(store, clock=ManualClock(now))


def _strict(store: LocalStore, gate: Gate, strict: bool) -> None:
    with store.write() as conn:
        save_settings(conn, GateSettings(debounce_seconds=0, strict=strict))
    gate.reload()


async def test_the_server_and_an_offline_gate_give_an_exit_the_same_verdict(
    client: Client, tenant: TenantHandle, settings: Settings, scanner_store: LocalStore
) -> None:
    event = await create_event(client, tenant)
    ticket_type = await create_ticket_type(client, tenant, event["id"])
    purchase = await buy(client, tenant, ticket_type["id"], quantity=2)
    assert purchase.status_code == 201, purchase.text
    (valid, refunded) = purchase.json()["tickets"]
    revoked = await client.post(
        f"/v1/tickets/{refunded['ticket']['id']}/revoke",
        json={"reason": "refund"},
        headers={**tenant.token(), "Idempotency-Key": "refund"},
    )
    assert revoked.status_code == 200, revoked.text
    ring = await issuer_ring(settings, tenant.id, event["id"])

    def genuine(ticket_id: uuid.UUID, secret_version: int) -> str:
        return issue_code(
            ring,
            ticket_id=ticket_id,
            event_id=uuid.UUID(event["id"]),
            secret_version=secret_version,
            issued_at=datetime.now(UTC),
        )

    codes: dict[str, tuple[str, VerdictReason | None]] = {
        # What the gates disagreed on: nobody is known to have left.
        "a ticket not on the list": (genuine(new_id(), 1), VerdictReason.NOT_FOUND),
        "newer than the issuer's record": (
            genuine(uuid.UUID(valid["ticket"]["id"]), valid["ticket"]["secret_version"] + 1),
            VerdictReason.INVALID_CODE,
        ),
        "not a code": ("GH2:not-a-code", VerdictReason.INVALID_CODE),
        # What they agreed on, and still do: a known ticket leaves, even revoked.
        "revoked": (refunded["code"], None),
        "valid": (valid["code"], None),
    }
    device = await enrolled_device(client, tenant, event["id"], gate="Exit 1")
    gate = await _synced_gate(client, device, scanner_store, tenant)
    _strict(scanner_store, gate, True)

    for case, (code, expected) in codes.items():
        online = await client.post(
            "/v1/validate", json={"code": code, "direction": "exit"}, headers=device.headers
        )
        offline = gate.scan(code, direction=Direction.EXIT)
        assert offline.mode == "offline"
        answered: Any = online.json()
        assert (answered["reason"], offline.verdict.reason) == (expected, expected), case
        assert online.status_code == (200 if expected is None else 422), case
        result = VerdictResult.ADMITTED if expected is None else VerdictResult.REJECTED
        assert offline.verdict.result is result, case

    # The one deliberate difference: a gate that is not strict lets a genuine code it has not
    # heard of out on its signature (as it lets it in: it may be sold after the last sync); the
    # upload then records the server's reason beside it, and the exit counts for no ticket.
    _strict(scanner_store, gate, False)
    unknown, _ = codes["a ticket not on the list"]
    on_signature = gate.scan(unknown, direction=Direction.EXIT)
    assert on_signature.admitted
    assert on_signature.on_signature
