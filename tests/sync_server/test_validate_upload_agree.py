"""One scan history, two ways in (issue 15): asked online, one scan at a time as it happens
(``POST /v1/validate``, the server's clock at each scan's time), and uploaded afterwards by the
gates that decided offline (``POST /v1/sync/scans``, in batches, in any order), each into an event
of its own. Both must come to the same admissions and the same conflicts.

The offline gates here know the ticket list as the server does (synced before the doors opened)
and hear of no other scan: every verdict that needs no history is theirs, every double entry is
left to the server. That is where the two ways deliberately differ, and only there
(docs/sync-protocol.md, "Online and offline: one history, one outcome"): the entry an online
check refuses as ``already_checked_in``, naming the admission it collides with as ``prior``, an
offline gate admits, and its upload is marked a conflict of that same admission.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient

from shared.clock import ManualClock
from shared.domain import Direction, VerdictReason, VerdictResult
from shared.ids import new_id
from shared.ticket_code import issue_code
from sync_server.app import create_app
from sync_server.settings import Settings
from tests.sync_server.conftest import TenantHandle, new_tenant
from tests.sync_server.helpers import (
    Client,
    DeviceHandle,
    buy,
    create_event,
    create_ticket_type,
    enrolled_device,
    issuer_ring,
)

pytestmark = [pytest.mark.integration]

#: Set-up (events, sales, enrollments) at the start; scans within the next 50 minutes (the
#: devices' tokens live an hour); the uploads arrive after the last scan.
START = datetime(2030, 5, 1, 19, 0, tzinfo=UTC)
UPLOADED = START + timedelta(minutes=55)
GATES = ("North 1", "South 2", "East 3")

# What a scan can present, in each event: three tickets on sale, one of them revoked, a genuine
# code of a ticket not on the list, a code of ticket 0 newer than the issuer's record of it, and
# a text that is no code at all.
VALID = (0, 1, 2)
REVOKED, NOT_ON_LIST, NEWER, JUNK = 3, 4, 5, 6

#: The verdict that needs no history, by what is presented and which way: what a gate decides
#: from the ticket list alone (``shared.rules``), online or offline. A revoked ticket still
#: leaves; a code that names no known ticket of the event neither enters nor leaves.
HISTORY_FREE: dict[tuple[int, Direction], VerdictReason | None] = {
    **{(slot, d): None for slot in VALID for d in Direction},
    (REVOKED, Direction.ENTRY): VerdictReason.REVOKED,
    (REVOKED, Direction.EXIT): None,
    **{(NOT_ON_LIST, d): VerdictReason.NOT_FOUND for d in Direction},
    **{(NEWER, d): VerdictReason.INVALID_CODE for d in Direction},
    **{(JUNK, d): VerdictReason.INVALID_CODE for d in Direction},
}


@dataclass(frozen=True)
class Scan:
    slot: int
    direction: Direction
    gate: int
    at: datetime


@dataclass(frozen=True)
class History:
    allow_reentry: bool
    #: In time order, no two at the same moment.
    scans: list[Scan]
    #: The offline uploads: indexes into ``scans``, in the order they are sent (each batch is
    #: split by device, as each gate uploads its own).
    batches: list[list[int]]


@st.composite
def histories(draw: st.DrawFn) -> History:
    seconds = draw(st.lists(st.integers(1, 50 * 60), min_size=1, max_size=12, unique=True))
    scans = [
        Scan(
            # Mostly the tickets on sale, so that double entries, exits and re-entries happen.
            slot=draw(st.sampled_from([0, 0, 0, 1, 1, 2, REVOKED, NOT_ON_LIST, NEWER, JUNK])),
            direction=draw(st.sampled_from([Direction.ENTRY, Direction.ENTRY, Direction.EXIT])),
            gate=draw(st.integers(0, len(GATES) - 1)),
            at=START + timedelta(seconds=s),
        )
        for s in sorted(seconds)
    ]
    order = draw(st.permutations(range(len(scans))))
    cuts = sorted(draw(st.sets(st.integers(1, max(len(scans) - 1, 1)), max_size=2)))
    batches = [
        list(order[a:b]) for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True) if a < b
    ]
    return History(allow_reentry=draw(st.booleans()), scans=scans, batches=batches)


@dataclass(frozen=True)
class Side:
    """One event of the tenant: what each slot presents there, and its gates' devices."""

    codes: list[str]
    devices: list[DeviceHandle]


async def _side(
    client: Client, settings: Settings, tenant: TenantHandle, allow_reentry: bool
) -> Side:
    event = await create_event(client, tenant, allow_reentry=allow_reentry)
    ticket_type = await create_ticket_type(client, tenant, event["id"])
    purchase = await buy(client, tenant, ticket_type["id"], quantity=4)
    assert purchase.status_code == 201, purchase.text
    tickets = purchase.json()["tickets"]
    revoked = await client.post(
        f"/v1/tickets/{tickets[REVOKED]['ticket']['id']}/revoke",
        json={"reason": "refund"},
        headers={**tenant.token(), "Idempotency-Key": str(new_id())},
    )
    assert revoked.status_code == 200, revoked.text
    ring = await issuer_ring(settings, tenant.id, event["id"])
    first = tickets[0]["ticket"]

    def genuine(ticket_id: uuid.UUID, secret_version: int) -> str:
        return issue_code(
            ring,
            ticket_id=ticket_id,
            event_id=uuid.UUID(event["id"]),
            secret_version=secret_version,
            issued_at=START,
        )

    codes = [
        *(t["code"] for t in tickets),
        genuine(new_id(), 1),
        genuine(uuid.UUID(first["id"]), first["secret_version"] + 1),
        "GH2:this-is-not-a-code",
    ]
    devices = [await enrolled_device(client, tenant, event["id"], gate=g) for g in GATES]
    return Side(codes, devices)


#: What one scan came to: admitted, or refused with a reason, and for ``already_checked_in``
#: the index of the admission it collided with.
Outcome = tuple[VerdictResult, VerdictReason | None, int | None]


async def _online(client: Client, clock: ManualClock, side: Side, history: History) -> list[Any]:
    outcomes: list[Outcome] = []
    ids: dict[str, int] = {}
    for index, scan in enumerate(history.scans):
        clock.set(scan.at)
        scan_id = str(new_id())
        ids[scan_id] = index
        answer = await client.post(
            "/v1/validate",
            json={
                "code": side.codes[scan.slot],
                "direction": scan.direction.value,
                "scan_id": scan_id,
            },
            headers=side.devices[scan.gate].headers,
        )
        assert answer.status_code in (200, 409, 422), answer.text
        verdict = answer.json()
        prior = verdict["prior"]
        outcomes.append(
            (
                VerdictResult(verdict["result"]),
                VerdictReason(verdict["reason"]) if verdict["reason"] else None,
                ids[prior["scan_id"]] if prior else None,
            )
        )
    return outcomes


async def _offline(client: Client, clock: ManualClock, side: Side, history: History) -> list[Any]:
    clock.set(UPLOADED)
    scan_ids = [str(new_id()) for _ in history.scans]
    index_of = {scan_id: index for index, scan_id in enumerate(scan_ids)}
    stored: dict[int, dict[str, Any]] = {}
    for batch in history.batches:
        for gate in range(len(GATES)):
            mine = [i for i in batch if history.scans[i].gate == gate]
            if not mine:
                continue
            uploads = []
            for i in mine:
                scan = history.scans[i]
                refused = HISTORY_FREE[scan.slot, scan.direction]
                uploads.append(
                    {
                        "scan_id": scan_ids[i],
                        "code": side.codes[scan.slot],
                        "gate": GATES[gate],
                        "direction": scan.direction.value,
                        "scanned_at": scan.at.isoformat(),
                        "clock_offset_ms": 0,
                        "device_result": "admitted" if refused is None else "rejected",
                        "device_reason": refused.value if refused else None,
                    }
                )
            answer = await client.post(
                "/v1/sync/scans", json={"scans": uploads}, headers=side.devices[gate].headers
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            # What the gate keeps: its batch's outcomes, then the earlier scans the batch
            # reclassified (a later upload can make an earlier one a conflict, or not).
            for outcome in [*body["outcomes"], *body["reclassified"]]:
                stored[index_of[outcome["scan_id"]]] = outcome
    outcomes: list[Outcome] = []
    for index in range(len(history.scans)):
        outcome = stored[index]
        # The gate's history-free verdict is the server's too: nothing it admitted would the
        # server have refused.
        assert outcome["server_reason"] is None, outcome
        result = VerdictResult(outcome["result"])
        reason = VerdictReason(outcome["reason"]) if outcome["reason"] else None
        if outcome["conflict_of"] is not None:
            # The deliberate difference: admitted at the gate, a conflict of an earlier
            # admission; online, the same entry is refused as already checked in, naming it.
            assert result is VerdictResult.ADMITTED
            outcomes.append(
                (
                    VerdictResult.REJECTED,
                    VerdictReason.ALREADY_CHECKED_IN,
                    index_of[outcome["conflict_of"]],
                )
            )
        else:
            outcomes.append((result, reason, None))
    return outcomes


async def _both_ways(settings: Settings, history: History) -> tuple[list[Any], list[Any]]:
    clock = ManualClock(START)
    async with AsyncTestClient(app=create_app(settings, clock=clock)) as client:
        tenant = (await new_tenant(settings, "Two ways")).at(START)
        online_side = await _side(client, settings, tenant, history.allow_reentry)
        offline_side = await _side(client, settings, tenant, history.allow_reentry)
        online = await _online(client, clock, online_side, history)
        offline = await _offline(client, clock, offline_side, history)
    return online, offline


@hypothesis_settings(max_examples=25, deadline=None)
@given(history=histories())
def test_validate_and_upload_agree_on_admissions_and_conflicts(
    settings: Settings, history: History
) -> None:
    online, offline = asyncio.run(_both_ways(settings, history))
    assert online == offline
    for index, (result, reason, prior) in enumerate(online):
        scan = history.scans[index]
        refused = HISTORY_FREE[scan.slot, scan.direction]
        if refused is not None:
            assert (result, reason) == (VerdictResult.REJECTED, refused)
        elif reason is not None:
            # Only a second entry is refused for its history, and it names an earlier entry.
            assert reason is VerdictReason.ALREADY_CHECKED_IN
            assert prior is not None
            assert prior < index
            assert history.scans[prior].direction is Direction.ENTRY
