"""Review of the migrations for long locks on big tables (issue 19, docs/operations.md
"Upgrades").

``gatehouse-server migrate`` runs while the event may be live: a statement that holds an
``ACCESS EXCLUSIVE`` (or ``SHARE``) lock on ``tickets`` or ``ticket_scans`` while it rewrites or
scans the table stops every admission for as long as that takes. This test reads every
revision's ``upgrade()`` (its ``op.*`` calls through the AST, and the SQL it passes to
``op.execute``) and flags the operations in ``RULES`` — unless the statement carries a
reviewed waiver: a ``# lock-reviewed: <why it is safe>`` comment on its first line or on one
of the ``WAIVER_REACH`` lines above it.

Data-driven: a new kind of risky statement is one more ``Rule``; a reviewed one is one more
comment in its migration. A table whose name the lint cannot read (a loop variable, an
f-string) counts as big.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

VERSIONS = Path(__file__).resolve().parents[2] / "migrations" / "versions"

#: Tables that grow with sales and scans (millions of rows at a big event): a rewrite, a full
#: scan under a strong lock or a blocking index build on them is what the lint is for.
BIG_TABLES = frozenset(
    {
        "tickets",
        "ticket_scans",
        "ticket_state_transitions",
        "outbox",
        "processed_events",
        "idempotency_keys",
    }
)
WAIVER = re.compile(r"#\s*lock-reviewed:\s*\S.{9,}")
#: How many lines above a statement its waiver may stand (a comment block before the call).
WAIVER_REACH = 4
#: Functions whose value differs per row: a column added with one as its default rewrites the
#: table (PostgreSQL 11+ adds a column with a constant or stable default without a rewrite).
VOLATILE = re.compile(r"gen_random_uuid|random\(|clock_timestamp|nextval|uuid_generate", re.I)


@dataclass(frozen=True, slots=True)
class Call:
    """One ``op.<name>(...)`` of an ``upgrade()``: its name, table (None: not readable), its
    source and the SQL it runs (for ``op.execute``)."""

    name: str
    table: str | None
    source: str
    sql: str
    line: int


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    why: str
    applies: Callable[[Call], bool]


def _big(table: str | None) -> bool:
    return table is None or table in BIG_TABLES


def _sql_on_big_table(pattern: str) -> Callable[[Call], bool]:
    compiled = re.compile(pattern, re.I | re.S)

    def applies(call: Call) -> bool:
        if call.name != "execute" or not compiled.search(call.sql):
            return False
        names = set(re.findall(r"[a-z_]+", call.sql.lower()))
        return bool(names & BIG_TABLES) or "{" in call.sql  # an f-string: table unknown

    return applies


def _kw(call: Call, name: str) -> bool:
    return re.search(rf"\b{name}\s*=", call.source) is not None


RULES: tuple[Rule, ...] = (
    Rule(
        "index-not-concurrent",
        "CREATE INDEX without CONCURRENTLY blocks writes to the table until it is built",
        lambda c: (
            (
                c.name in {"create_index", "create_unique_constraint"}
                and _big(c.table)
                and not re.search(r"postgresql_concurrently\s*=\s*True", c.source)
            )
            or _sql_on_big_table(r"CREATE\s+(UNIQUE\s+)?INDEX(?!\s+CONCURRENTLY)")(c)
        ),
    ),
    Rule(
        "column-type-change",
        "ALTER COLUMN ... TYPE rewrites the table under an ACCESS EXCLUSIVE lock",
        lambda c: (
            (c.name == "alter_column" and _big(c.table) and _kw(c, "type_"))
            or _sql_on_big_table(r"ALTER\s+COLUMN\s+\w+\s+(SET\s+DATA\s+)?TYPE")(c)
        ),
    ),
    Rule(
        "set-not-null",
        "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock",
        lambda c: (
            (
                c.name == "alter_column"
                and _big(c.table)
                and re.search(r"nullable\s*=\s*False", c.source) is not None
            )
            or _sql_on_big_table(r"SET\s+NOT\s+NULL")(c)
        ),
    ),
    Rule(
        "constraint-validated",
        "a foreign key or check constraint added without NOT VALID scans the table under lock",
        lambda c: (
            (
                c.name in {"create_foreign_key", "create_check_constraint"}
                and _big(c.table)
                and "postgresql_not_valid" not in c.source
            )
            or _sql_on_big_table(
                r"ADD\s+CONSTRAINT\s+\w+\s+(FOREIGN\s+KEY|CHECK)(?!.*NOT\s+VALID)"
            )(c)
        ),
    ),
    Rule(
        "table-rewrite",
        "a stored generated column, or a column with a volatile default, rewrites the table",
        lambda c: (
            (
                c.name == "add_column"
                and _big(c.table)
                and ("Computed(" in c.source or VOLATILE.search(c.source) is not None)
            )
            or _sql_on_big_table(r"GENERATED\s+ALWAYS\s+AS\s*\(.*STORED")(c)
            or _sql_on_big_table(r"ADD\s+COLUMN.*DEFAULT\s+[^,;]*(gen_random_uuid|random|nextval)")(
                c
            )
        ),
    ),
    Rule(
        "backfill",
        "an UPDATE of every row of a big table holds row locks and bloats it in one transaction",
        _sql_on_big_table(r"^\s*UPDATE\s"),
    ),
)


def _table(node: ast.Call, name: str) -> str | None:
    """The table an ``op`` call works on, when its source names it as a literal."""
    positions = {
        "create_table": 0,
        "create_index": 1,
        "create_unique_constraint": 1,
        "create_foreign_key": 1,
        "create_check_constraint": 1,
        "add_column": 0,
        "alter_column": 0,
    }
    for keyword in node.keywords:
        if keyword.arg in {"table_name", "source_table", "table"} and isinstance(
            keyword.value, ast.Constant
        ):
            return str(keyword.value.value)
    index = positions.get(name)
    if index is not None and len(node.args) > index:
        arg = node.args[index]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
    return None


def _sql(node: ast.Call, module: ast.Module) -> str:
    """The SQL text of ``op.execute(...)``: literal parts as written, names of module-level
    string constants resolved, anything else as ``{...}``."""
    if not node.args:
        return ""
    constants = {
        target.id: stmt.value.value
        for stmt in module.body
        if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
        for target in stmt.targets
        if isinstance(target, ast.Name) and isinstance(stmt.value.value, str)
    }
    arg = node.args[0]
    parts: list[str] = []
    for sub in ast.walk(arg):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            parts.append(sub.value)
        elif isinstance(sub, ast.Name) and sub.id in constants:
            parts.append(str(constants[sub.id]))
        elif isinstance(sub, ast.FormattedValue):
            parts.append("{...}")
    return " ".join(parts)


def upgrade_calls(path: Path) -> list[Call]:
    """Every ``op.*`` call in the revision's ``upgrade()`` and the helpers it defines."""
    text = path.read_text()
    module = ast.parse(text)
    skip = {
        node
        for node in ast.walk(module)
        if isinstance(node, ast.FunctionDef) and node.name == "downgrade"
    }
    inside_downgrade = {id(n) for fn in skip for n in ast.walk(fn)}
    calls = []
    for node in ast.walk(module):
        if (
            isinstance(node, ast.Call)
            and id(node) not in inside_downgrade
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "op"
        ):
            name = node.func.attr
            calls.append(
                Call(
                    name=name,
                    table=_table(node, name),
                    source=ast.get_source_segment(text, node) or "",
                    sql=_sql(node, module) if name == "execute" else "",
                    line=node.lineno,
                )
            )
    return calls


def _waived(lines: list[str], line: int) -> bool:
    start = max(0, line - 1 - WAIVER_REACH)
    return any(WAIVER.search(text) for text in lines[start:line])


def findings(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    found = []
    calls = upgrade_calls(path)
    # A table the revision creates is empty while it runs: nothing on it takes long.
    created = {c.table for c in calls if c.name == "create_table"}
    for call in calls:
        if call.table is not None and call.table in created:
            continue
        for rule in RULES:
            if rule.applies(call) and not _waived(lines, call.line):
                found.append(f"{path.name}:{call.line}: {rule.code}: {rule.why}")
    return found


REVISIONS = sorted(VERSIONS.glob("[0-9]*.py"))


@pytest.mark.parametrize("path", REVISIONS, ids=[p.stem for p in REVISIONS])
def test_no_revision_takes_a_long_lock_on_a_big_table_without_a_reviewed_waiver(
    path: Path,
) -> None:
    assert findings(path) == [], (
        "Make the statement safe (CONCURRENTLY, NOT VALID then VALIDATE, a nullable column "
        "filled in batches), or say why it is safe in a '# lock-reviewed: <why>' comment on "
        "it (docs/operations.md, Upgrades)."
    )


def _revision(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "9999_probe.py"
    path.write_text(
        "from alembic import op\nimport sqlalchemy as sa\n\n\ndef upgrade() -> None:\n"
        + "".join(f"    {line}\n" for line in body.splitlines())
        + "\n\ndef downgrade() -> None:\n    op.drop_index('ix_x', 'tickets')\n"
    )
    return path


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("op.create_index('ix_t_a', 'tickets', ['a'])", "index-not-concurrent"),
        ("op.execute('CREATE INDEX ix_s ON ticket_scans (a)')", "index-not-concurrent"),
        ("op.alter_column('ticket_scans', 'a', type_=sa.Text)", "column-type-change"),
        ("op.alter_column('tickets', 'a', nullable=False)", "set-not-null"),
        ("op.create_foreign_key('fk', 'ticket_scans', 'devices', ['d'], ['id'])", "constraint-"),
        (
            "op.add_column('tickets', sa.Column('s', sa.Text, sa.Computed('lower(a)')))",
            "table-rewrite",
        ),
        (
            "op.add_column('tickets', sa.Column('k', sa.Uuid, "
            "server_default=sa.text('gen_random_uuid()')))",
            "table-rewrite",
        ),
        ("op.execute('UPDATE tickets SET a = 1')", "backfill"),
        ("for t in ('tickets',):\n    op.create_index('ix', t, ['a'])", "index-not-concurrent"),
    ],
)
def test_the_lint_flags_each_kind_of_long_lock(tmp_path: Path, body: str, code: str) -> None:
    found = findings(_revision(tmp_path, body))
    assert len(found) == 1
    assert f": {code}" in found[0]


@pytest.mark.parametrize(
    "body",
    [
        "op.create_index('ix_d', 'devices', ['a'])",  # a small table
        "with op.get_context().autocommit_block():\n"
        "    op.create_index('ix_t', 'tickets', ['a'], postgresql_concurrently=True)",
        "op.add_column('tickets', sa.Column('n', sa.Integer, nullable=True))",
        "op.add_column('tickets', sa.Column('n', sa.Integer, server_default='0'))",
        "op.execute('ALTER TABLE ticket_scans ADD CONSTRAINT c CHECK (a > 0) NOT VALID')",
        "# lock-reviewed: tickets is empty until the first sale of this release\n"
        "op.create_index('ix_t', 'tickets', ['a'])",
    ],
)
def test_the_lint_passes_safe_and_waived_statements(tmp_path: Path, body: str) -> None:
    assert findings(_revision(tmp_path, body)) == []
