"""The live-server fixture itself: a real server the scanner tests can stop and start again."""

from __future__ import annotations

import socket

import httpx
import pytest

from shared.domain import VerdictReason, VerdictResult
from tests.scanner_app.live_server import ApiError, BackOffice, LiveServer, device_me, enroll

pytestmark = [pytest.mark.integration]


def refuses_connections(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
    return False


def test_tokens_and_keys_survive_a_stop_and_a_start(
    live_server: LiveServer, back_office: BackOffice
) -> None:
    sale = back_office.event_on_sale(tickets=3)
    assert len({t.id for t in sale.tickets}) == 3
    assert all(t.code.startswith("GH2") for t in sale.tickets)

    enrollment = back_office.create_enrollment(sale.event_id, gate="North 1")
    device = enroll(live_server.url, enrollment.code, "North 1 scanner")
    assert device.event_id == sale.event_id
    assert device.event.event_id == sale.event_id
    assert device.event.name == sale.event.name
    assert device.gate == "North 1"
    assert device.keys.verify_keys
    assert device.keys.encryption_keys

    live_server.stop()
    assert not live_server.running
    assert refuses_connections(live_server.port)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{live_server.url}/health", timeout=2.0)

    live_server.start()  # raises with the server's log when /health does not answer

    me = device_me(live_server.url, device.device_token)
    assert me.device_id == device.device_id
    assert not me.revoked
    assert me.keys == device.keys
    assert back_office.ticket(sale.tickets[0].id).secret_version == 0


def test_a_killed_server_comes_back_for_the_next_test(live_server: LiveServer) -> None:
    live_server.kill()
    assert refuses_connections(live_server.port)
    # left down on purpose: the next test's `live_server` starts it again


def test_the_back_office_sets_up_what_scanner_tests_check(
    live_server: LiveServer, back_office: BackOffice
) -> None:
    assert live_server.running  # started again after the previous test killed it
    sale = back_office.event_on_sale(tickets=52, allow_reentry=True)  # two purchases
    assert len(sale.tickets) == 52
    assert sale.event.allow_reentry
    kept, moved, revoked = sale.tickets[:3]

    device = back_office.enrolled_device(sale.event_id, gate="South 2")
    scanner = httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {device.device_token}"}
    )
    with scanner:
        assert scanner.post("/v1/validate", json={"code": kept.code}).status_code == 200

        transferred = back_office.transfer(moved.id, holder_name="Bea Newholder")
        assert transferred.secret_version == moved.secret_version + 1
        assert transferred.code != moved.code
        superseded = scanner.post("/v1/validate", json={"code": moved.code})
        assert superseded.json()["reason"] == VerdictReason.SUPERSEDED

        assert back_office.revoke(revoked.id).status == "revoked"
        with pytest.raises(ApiError) as refused:
            back_office.revoke(revoked.id)
        assert refused.value.code == "already_revoked"

        scans = back_office.scans(sale.event_id)
        assert [(s.ticket_id, s.result) for s in scans] == [
            (kept.id, VerdictResult.ADMITTED),
            (moved.id, VerdictResult.REJECTED),
        ]
        assert back_office.scans(sale.event_id, result="admitted")[0].gate == "South 2"
        assert back_office.stats(sale.event_id).admitted == 1
        assert [d.id for d in back_office.devices(sale.event_id)] == [device.device_id]

        back_office.revoke_device(device.device_id)
        with pytest.raises(ApiError) as revoked_device:
            device_me(live_server.url, device.device_token)
        assert revoked_device.value.code == "device_revoked"
