"""What the on-chain ownership check adds to an online verdict: ``POST /v1/validate`` with the
chain off, then on, same harness and load.

    ./dev bench validate_chain      (or: python -m benchmarks.validate_chain [--quick])

A fresh database and a real ``gatehouse-server serve`` (2 workers) per series, one enrolled
scanner, wrk sending a fresh code with every request (as ``validate`` does; see
``validate.lua``). With the chain on, the server points at a local Solana node
(``testkit.solana.localnode``: LiteSVM behind real HTTP JSON-RPC) running in this process on
127.0.0.1, and every ticket's NFT is minted on it beforehand (to custody: the tickets have no
holder wallet) and recorded as ``synced``, so every admission asks the chain: one breaker
round trip to Redis and one ``getAccountInfo`` over HTTP, within the default 0.25 s budget.

What this does not measure: a real RPC provider's network distance. Against a remote node the
added latency is at least its round-trip time (tens of milliseconds across a continent), which
this loopback figure does not include.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from redis import Redis
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from benchmarks.environment import header
from benchmarks.server_harness import (
    SERVER_WORKERS,
    BenchDatabase,
    CpuMeter,
    CpuUse,
    EventHandle,
    Secrets,
    Seeder,
    Server,
    free_port,
    fresh_database,
    gatehouse_serve_command,
    machine_note,
    postgres_backends,
    quiet_note,
    request,
    server_env,
    wait_for_quiet,
)
from benchmarks.validate import per_verdict_ms
from benchmarks.wrk_load import WrkResult, run_wrk, wrk_version
from sync_server.chain.client import ChainKeys
from sync_server.chain.nft import (
    TicketMetadata,
    build_transaction,
    mint_ticket_instructions,
    ticket_mint_space,
)
from testkit.solana.localnode import LocalSolanaNode

LAMPORTS = 10**15  # the issuer's float: far more than any run's rent
OWNERSHIP_FAILED = "not checked"  # GuardedOwnership's log line for a failed or late check
RPC = "solana-rpc"


@dataclass(frozen=True, slots=True)
class Plan:
    duration_s: float
    warm_up_s: float
    levels: tuple[int, ...]
    pool: int  # fresh tickets before the first row (more are made between rows when needed)


FULL = Plan(duration_s=5, warm_up_s=2, levels=(1, 16, 64), pool=4_000)
QUICK = Plan(duration_s=2, warm_up_s=1, levels=(1, 16), pool=1_500)


@dataclass(frozen=True, slots=True)
class Row:
    series: str
    result: WrkResult
    cpu: CpuUse
    #: ``getAccountInfo`` requests the node answered during the row (None: chain off).
    asked: int | None
    #: Checks that failed or ran out of time (the server logs each one).
    failed: int
    #: The ``solana-rpc`` circuit after the row: closed, or opened during it.
    circuit: str

    @property
    def verified(self) -> int | None:
        """Admissions the chain confirmed: checks the node answered, less those too late, at
        most the admissions wrk saw (requests still in flight when wrk stops reach the node
        but not wrk's count)."""
        if self.asked is None:
            return None
        return max(0, min(self.asked - self.failed, self.result.statuses.get(200, 0)))


class NodeCalls:
    """Counts the JSON-RPC methods the benchmark's own node answers, by wrapping its ledger's
    dispatcher: the only way to tell a check that was made from one the open circuit skipped."""

    def __init__(self, node: LocalSolanaNode) -> None:
        self.counts: Counter[str] = Counter()
        answer = node.ledger.call

        def counted(method: str, params: Any) -> Any:
            self.counts[method] += 1
            return answer(method, params)

        node.ledger.call = counted  # type: ignore[method-assign]


@dataclass(frozen=True, slots=True)
class Chain:
    node: LocalSolanaNode
    keys: ChainKeys
    keyfiles: Path
    calls: NodeCalls

    def env(self) -> dict[str, str]:
        issuer, custody = self.keyfiles / "issuer.json", self.keyfiles / "custody.json"
        issuer.write_text(self.keys.issuer.to_json())
        custody.write_text(self.keys.custody.to_json())
        return {
            "GATEHOUSE_SOLANA_RPC_URL": self.node.rpc_url,
            "GATEHOUSE_SOLANA_ISSUER_KEYPAIR": str(issuer),
            "GATEHOUSE_SOLANA_CUSTODY_KEYPAIR": str(custody),
        }


def _log(message: str) -> None:
    print(f"    {message}", file=sys.stderr, flush=True)


# --- tickets on the chain ---------------------------------------------------------------------


def mint_nfts(chain: Chain, event: EventHandle, ticket_ids: Sequence[uuid.UUID]) -> list[Pubkey]:
    """Mint each ticket's NFT to custody, straight into the node's ledger (in process: the
    network path is not what is measured here). Returns the mint addresses."""
    ledger, keys = chain.node.ledger, chain.keys
    mints = []
    rent: int | None = None
    for ticket_id in ticket_ids:
        mint = keys.mint_keypair(ticket_id)
        metadata = TicketMetadata(
            name="Gatehouse ticket",
            symbol="GATE",
            uri=f"http://127.0.0.1:8000/v1/chain/metadata/{mint.pubkey()}",
            event_id=str(event.event_id),
            ticket_type=event.ticket_type_name,
        )
        if rent is None:  # every ticket's metadata has the same size
            rent = ledger.svm.minimum_balance_for_rent_exemption(ticket_mint_space(metadata)[1])
        instructions = mint_ticket_instructions(
            issuer=keys.issuer.pubkey(),
            mint=mint.pubkey(),
            holder=keys.custody.pubkey(),
            metadata=metadata,
            rent_lamports=rent,
        )
        transaction = build_transaction(
            instructions, payer=keys.issuer, signers=[mint], blockhash=ledger.svm.latest_blockhash()
        )
        ledger.submit(transaction, preflight=False)  # type: ignore[arg-type]  # legacy is fine
        mints.append(mint.pubkey())
    chain.node.advance(1)  # confirmed
    return mints


async def _record_synced(
    db: BenchDatabase, ticket_ids: Sequence[uuid.UUID], mints: Sequence[Pubkey], owner: Pubkey
) -> None:
    connection = await asyncpg.connect(db.owner_dsn)
    try:
        await connection.execute(
            "UPDATE tickets SET nft_mint = m.mint, chain_owner = $3, "
            "blockchain_sync_status = 'synced' "
            "FROM unnest($1::uuid[], $2::text[]) AS m(id, mint) WHERE tickets.id = m.id",
            list(ticket_ids),
            [str(m) for m in mints],
            str(owner),
        )
    finally:
        await connection.close()


# --- one series -------------------------------------------------------------------------------


def _measure(
    series: str,
    server: Server,
    db: BenchDatabase,
    chain: Chain | None,
    circuit_key: str,
    **wrk_args: object,
) -> Row:
    groups = {"server": server.worker_pids, "postgres": lambda: postgres_backends(db)}
    if chain is not None:
        groups["node"] = lambda: [os.getpid()]  # the node's thread; wrk is a child process
    failed_before = server.log_tail(10**9).count(OWNERSHIP_FAILED)
    asked_before = chain.calls.counts["getAccountInfo"] if chain is not None else 0
    meter = CpuMeter(groups)
    meter.start()
    result = run_wrk(server.base, **wrk_args)  # type: ignore[arg-type]
    cpu = meter.stop()
    failed = server.log_tail(10**9).count(OWNERSHIP_FAILED) - failed_before
    asked = chain.calls.counts["getAccountInfo"] - asked_before if chain is not None else None
    with Redis() as redis:
        opened = redis.hexists(circuit_key, "opened_until")
    if result.other:
        _log(f"non-verdict answers {dict(result.statuses)}, socket errors {result.socket_errors}")
    return Row(series, result, cpu, asked, failed, "opened" if opened else "closed")


def _first_verdict(server: Server, token: str, code: str) -> dict[str, object]:
    status, body = request(
        server.port,
        "POST",
        "/v1/validate",
        body=json.dumps({"code": code}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    verdict: dict[str, object] = json.loads(body)
    if status != 200:
        raise RuntimeError(f"the first validate answered {status}: {verdict}")
    return verdict


def _series(label: str, plan: Plan, workdir: Path, chain: Chain | None) -> tuple[list[Row], float]:
    keys = Secrets()
    prefix = f"gatehouse-bench-{secrets.token_hex(4)}:"
    rows: list[Row] = []
    with fresh_database("validate_chain") as db:
        seeder = Seeder(db, keys)
        seeder.create_tenant()
        port = free_port()
        env = server_env(db, keys, GATEHOUSE_REDIS_KEY_PREFIX=prefix)
        if chain is not None:
            env.update(chain.env())
        with Server(gatehouse_serve_command(port), port, env) as server:
            event = seeder.create_event(port, f"Chain {label}")
            token = seeder.enroll_device(port, event, gate="A", name="bench-scanner").token
            codes_file = workdir / f"{label}-codes.txt"
            made = 0

            def top_up(needed: int) -> None:
                nonlocal made
                missing = needed - (made - offset)
                if missing <= 0:
                    return
                _log(f"{label}: {missing:,} more tickets (server idle)")
                ids = seeder.insert_tickets(event, missing)
                if chain is not None:
                    mints = mint_nfts(chain, event, ids)
                    asyncio.run(_record_synced(db, ids, mints, chain.keys.custody.pubkey()))
                codes = seeder.mint_codes(event, ids)
                made += len(codes)
                with codes_file.open("a") as handle:
                    handle.write("\n".join(codes) + "\n")

            offset, best_rate = 0, 0.0
            top_up(plan.pool)
            first = _first_verdict(server, token, codes_file.read_text().split("\n", 1)[0])
            expected = True if chain is not None else None
            if first.get("chain_verified") is not expected:
                raise RuntimeError(f"{label}: chain_verified should be {expected}: {first}")
            offset = 1
            busy = wait_for_quiet()
            runs = [("warm-up", 16, plan.warm_up_s)] + [
                (label, c, plan.duration_s) for c in plan.levels
            ]
            for series, connections, seconds in runs:
                top_up(int(2 * best_rate * seconds) + 500)
                _log(f"{series}: {connections} clients, {seconds:g} s, codes from line {offset}")
                row = _measure(
                    series,
                    server,
                    db,
                    chain,
                    f"{prefix}circuit:{RPC}",
                    codes_file=codes_file,
                    connections=connections,
                    duration_s=seconds,
                    offset=offset,
                    token=token,
                )
                offset = row.result.next_offset(offset)
                best_rate = max(best_rate, row.result.verdicts_per_s)
                if series != "warm-up":
                    rows.append(row)
    return rows, busy


# --- report -----------------------------------------------------------------------------------


def _table(rows: list[Row]) -> list[str]:
    lines = [
        "| chain check | clients | verdicts/s | p50 ms | p90 ms | p99 ms | 200 | other "
        "| chain-verified | circuit | server CPU ms/verdict | Postgres CPU ms/verdict "
        "| node CPU ms/verdict | machine busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        r, cpu = row.result, row.cpu
        mark = " (ran out of codes: a lower bound)" if r.ran_out else ""
        verified = "–" if row.verified is None else f"{row.verified:,}"
        lines.append(
            f"| {row.series}{mark} | {r.connections} | {r.verdicts_per_s:,.0f} | "
            f"{r.p50_ms:.1f} | {r.p90_ms:.1f} | {r.p99_ms:.1f} | {r.statuses.get(200, 0):,} | "
            f"{r.other:,} | {verified} | {row.circuit if row.asked is not None else '–'} | "
            f"{per_verdict_ms(cpu.seconds.get('server'), r.verdicts)} | "
            f"{per_verdict_ms(cpu.seconds.get('postgres'), r.verdicts)} | "
            f"{per_verdict_ms(cpu.seconds.get('node'), r.verdicts)} | {cpu.machine_busy:.0%} |"
        )
    return lines


def _added(off: list[Row], on: list[Row]) -> list[str]:
    lines = [
        "| clients | p50 added ms | p99 added ms | verdicts/s off → on |",
        "|---:|---:|---:|---|",
    ]
    for a, b in zip(off, on, strict=True):
        x, y = a.result, b.result
        change = (y.verdicts_per_s / x.verdicts_per_s - 1) * 100 if x.verdicts_per_s else 0.0
        lines.append(
            f"| {x.connections} | {y.p50_ms - x.p50_ms:+.1f} | {y.p99_ms - x.p99_ms:+.1f} | "
            f"{x.verdicts_per_s:,.0f} → {y.verdicts_per_s:,.0f} ({change:+.0f} %) |"
        )
    return lines


def run(quick: bool = False) -> str:
    plan = QUICK if quick else FULL
    node = LocalSolanaNode()
    # Its listening socket lacks TCP_NODELAY, and under the plain asyncio loop every answer
    # then waits for the client's delayed ACK (~40 ms: 44 ms per getAccountInfo from httpx
    # measured here, 0.7 ms from curl). A real RPC node answers at once; accepted sockets
    # inherit the option on Linux.
    node._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with tempfile.TemporaryDirectory(prefix="gatehouse-bench-chain-") as tmp, node:
        workdir = Path(tmp)
        keyfiles = workdir / "keys"
        keyfiles.mkdir(mode=0o700)
        keys = ChainKeys(issuer=Keypair(), custody=Keypair())
        node.ledger.airdrop(keys.issuer.pubkey(), LAMPORTS)
        off, off_busy = _series("off", plan, workdir, None)
        on, on_busy = _series("on", plan, workdir, Chain(node, keys, keyfiles, NodeCalls(node)))
    busy = max(off_busy, on_busy)
    threads = ", ".join(f"{c} client{'s' if c > 1 else ''}: -t{min(2, c)}" for c in plan.levels)
    return "\n".join(
        [
            "## Online check-in with the on-chain ownership check",
            "",
            header(
                "./dev bench validate_chain",
                "litestar",
                "uvicorn",
                "asyncpg",
                "solana",
                "solders",
                "httpx2",
            )
            + f" {wrk_version()}.",
            "",
            f"{machine_note(SERVER_WORKERS)} The local Solana node (LiteSVM behind HTTP "
            "JSON-RPC on 127.0.0.1, one Python thread) shares the machine too. Load: wrk, "
            f"{plan.duration_s:g} s per row after a {plan.warm_up_s:g} s warm-up ({threads}), "
            "a fresh ticket per request (every answer an admission, 200). *off*: no RPC URL, "
            "no chain check. *on*: every ticket's NFT minted on the node and recorded "
            "`synced`, so each admission checks the Redis circuit (`solana-rpc`) and makes one "
            "`getAccountInfo` of the expected owner's associated token account, within the "
            "default 0.25 s budget. *chain-verified*: admissions the chain confirmed "
            "(`chain_verified: true`; the others were admitted with `null`: the check ran out "
            "of time, or the circuit was open and skipped it), counted from the requests the "
            "node answered less the checks the server logged as failed or late; *circuit*: "
            "whether the `solana-rpc` breaker opened during the row. "
            "*node CPU* is this benchmark's own process, which serves the node while wrk runs. "
            "The node answers on loopback: a remote RPC provider adds its network round trip "
            "on top of these figures." + quiet_note(busy),
            "",
            *_table(off + on),
            "",
            "Added by the check (on minus off, same clients):",
            "",
            *_added(off, on),
        ]
    )


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
