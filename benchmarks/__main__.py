"""Run the benchmarks and write their results into docs/benchmarks.md.

    ./dev bench                 every benchmark
    ./dev bench decode          only the named ones (see BENCHMARKS)
    ./dev bench --quick         smaller sets, for a smoke run (results are not written)

Each benchmark module has ``run(quick: bool) -> str`` returning a markdown section. Sections
live between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` markers in the document, so a
run replaces its own section and leaves the others as they were.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

BENCHMARKS = (
    "ticket_code",
    "decode",
    "pipeline",
    "offline_verdict",
    "validate",
    "admission_floor",
    "validate_chain",
    "ingest",
    "feed",
    "cold_start",
    "checkin_rules",
    "checkin_lists",
    "peers",
    "console",
)
DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


NOTES = "## Notes\n"


def write_section(doc: Path, name: str, body: str) -> None:
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    elif NOTES in text:  # a new section goes before the notes, which stay last
        text = text.replace(NOTES, block + "\n\n" + NOTES, 1)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev bench", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", choices=[[], *BENCHMARKS], metavar="NAME")
    parser.add_argument("--quick", action="store_true", help="small sets; don't write the doc")
    args = parser.parse_args(argv)
    for name in args.names or BENCHMARKS:
        print(f"==> benchmark {name}", file=sys.stderr, flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        section: str = module.run(quick=args.quick)
        print(section, flush=True)
        if not args.quick:
            write_section(DOC, name, section)
    if not args.quick:
        print(f"results written to {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
