"""The console over HTTP without a browser (tests/console drives it in Chromium): what it
answers to junk, that it says so when its assets are missing, and its security headers."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync_server.console import assets
from tests.sync_server.helpers import Client

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def test_the_sign_in_page_carries_the_consoles_security_headers(client: Client) -> None:
    page = await client.get("/console/sign-in")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    csrf = page.cookies.get("gatehouse_console_csrf")
    assert csrf
    assert f'value="{csrf}"' in page.text
    # Nothing loads from another host.
    assert "http://" not in page.text.replace("http://www.w3.org", "")
    assert "https://" not in page.text


async def test_without_its_assets_the_console_says_so_and_still_works(
    client: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    installed = await client.get("/console/sign-in")
    assert "htmx.min.js" in installed.text
    assert "not installed" not in installed.text
    monkeypatch.setattr(assets, "VENDOR_DIR", tmp_path)
    page = await client.get("/console/sign-in")
    assert page.status_code == 200
    assert "browser scripts are not installed (htmx.min.js, uPlot.iife.min.js" in page.text
    assert "./dev setup" in page.text
    assert "<script" not in page.text  # no broken script tag
    assert '<form method="post" action="/console/sign-in"' in page.text


@pytest.mark.parametrize(
    ("method", "path", "body", "headers"),
    [
        (
            "POST",
            "/console/sign-in",
            b"\xff\xfe",
            {"content-type": "multipart/form-data; boundary=x"},
        ),
        ("POST", "/console/sign-in", b"{}", {"content-type": "application/json"}),
        (
            "POST",
            "/console/events",
            b"name=x",
            {"content-type": "application/x-www-form-urlencoded"},
        ),
        ("POST", "/console/sign-out", b"", {}),
        ("GET", "/console/set-password?token=" + "x" * 5000, b"", {}),
        ("GET", "/console/set-password", b"", {}),
        ("GET", "/console/events/not-a-uuid", b"", {}),
        ("GET", "/console/events", b"", {"cookie": "gatehouse_console=" + "x" * 5000}),
        ("GET", "/console/events", b"", {"cookie": "gatehouse_console=abc"}),
        ("GET", "/console/static/../../app.py", b"", {}),
    ],
)
async def test_junk_gets_an_answer_never_a_500(
    client: Client, method: str, path: str, body: bytes, headers: dict[str, str]
) -> None:
    answer = await client.request(
        method, path, content=body, headers=headers, follow_redirects=False
    )
    assert answer.status_code in {303, 400, 403, 404}, answer.text[:300]
