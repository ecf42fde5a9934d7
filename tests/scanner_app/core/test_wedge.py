"""The keyboard-wedge parser: scanner bursts become scans, a person's typing is handed back."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner_app.core.synthetic_frames import ticket_like_texts
from scanner_app.core.wedge import (
    ENTER,
    TAB,
    IncompleteScan,
    KeyPress,
    Scan,
    TypedKeys,
    WedgeEvent,
    WedgeParser,
)

SCANNER_GAP = 0.004  # a typical USB scanner: a key every few milliseconds
TYPIST_GAP = 0.18  # a quick typist: about 65 words a minute
CODE = ticket_like_texts(1, seed=3)[0]


def type_keys(
    parser: WedgeParser, keys: str, start: float, gap: float
) -> tuple[list[WedgeEvent], float]:
    """Feed ``keys`` one every ``gap`` seconds from ``start``; return events and the last time."""
    events: list[WedgeEvent] = []
    at = start
    for i, key in enumerate(keys):
        at = start + i * gap
        events += parser.feed(key, at)
    return events, at


def typed_text(events: Sequence[WedgeEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TypedKeys))


def test_a_fast_burst_ending_in_enter_is_one_scan_with_the_text_as_typed() -> None:
    parser = WedgeParser()
    events, end = type_keys(parser, CODE + ENTER, start=10.0, gap=SCANNER_GAP)
    assert events == [Scan(CODE, started_at=10.0, ended_at=end)]
    assert parser.deadline is None  # nothing held back
    assert parser.poll(end + 1.0) == []


def test_lower_case_from_caps_lock_is_kept_as_typed() -> None:
    lower = CODE.lower()
    events, _ = type_keys(WedgeParser(), lower + ENTER, start=0.0, gap=SCANNER_GAP)
    assert [e.text for e in events if isinstance(e, Scan)] == [lower]


def test_slow_typing_is_handed_back_key_by_key_and_is_never_a_scan() -> None:
    parser = WedgeParser()
    events, _ = type_keys(parser, "hello world" + ENTER, start=0.0, gap=TYPIST_GAP)
    assert not any(isinstance(e, Scan | IncompleteScan) for e in events)
    # Each key is released when the next one shows it was not a burst; Enter ends it all.
    assert typed_text(events) == "hello world" + ENTER
    assert parser.deadline is None


def test_a_held_key_is_released_once_its_gap_has_passed() -> None:
    parser = WedgeParser(max_gap=0.05)
    assert parser.feed("a", 1.0) == []
    assert parser.deadline == pytest.approx(1.05)
    assert parser.poll(1.04) == []  # could still be the start of a scan
    assert parser.poll(1.06) == [TypedKeys((KeyPress("a", 1.0),))]
    assert parser.deadline is None


def test_a_short_fast_burst_with_enter_is_typing_not_a_scan() -> None:
    # A typist rolling "ok" and Enter together is fast but short.
    events, _ = type_keys(WedgeParser(min_length=8), "ok" + ENTER, start=0.0, gap=0.03)
    assert events == [TypedKeys((KeyPress("o", 0.0), KeyPress("k", 0.03), KeyPress(ENTER, 0.06)))]


def test_min_length_counts_characters_without_the_terminator() -> None:
    parser = WedgeParser(min_length=5)
    assert type_keys(parser, "ABCD" + ENTER, 0.0, SCANNER_GAP)[0] == [
        TypedKeys(tuple(KeyPress(c, i * SCANNER_GAP) for i, c in enumerate("ABCD" + ENTER)))
    ]
    assert type_keys(parser, "ABCDE" + ENTER, 5.0, SCANNER_GAP)[0] == [
        Scan("ABCDE", 5.0, 5.0 + 5 * SCANNER_GAP)
    ]


def test_a_long_burst_without_enter_is_an_incomplete_scan_not_typing() -> None:
    parser = WedgeParser()
    events, end = type_keys(parser, CODE, start=0.0, gap=SCANNER_GAP)
    assert events == []
    assert parser.poll(end + 1.0) == [IncompleteScan(CODE, 0.0, end)]
    # Found out by the next key just as well as by poll():
    parser = WedgeParser()
    type_keys(parser, CODE, start=0.0, gap=SCANNER_GAP)
    assert parser.feed("x", end + 1.0) == [IncompleteScan(CODE, 0.0, end)]
    assert parser.poll(end + 2.0) == [TypedKeys((KeyPress("x", end + 1.0),))]


def test_a_short_burst_without_enter_is_typing() -> None:
    parser = WedgeParser()
    type_keys(parser, "as", start=0.0, gap=0.02)
    assert parser.poll(1.0) == [TypedKeys((KeyPress("a", 0.0), KeyPress("s", 0.02)))]


def test_a_key_held_down_auto_repeating_is_typing() -> None:
    parser = WedgeParser()
    backspaces, end = type_keys(parser, "\b" * 20, start=0.0, gap=0.033)
    assert backspaces == []
    assert typed_text(parser.poll(end + 1.0)) == "\b" * 20


def test_a_slow_gap_inside_a_burst_splits_it() -> None:
    parser = WedgeParser(max_gap=0.05)
    first, end = type_keys(parser, CODE[:100], start=0.0, gap=SCANNER_GAP)
    second, _ = type_keys(parser, CODE[100:] + ENTER, start=end + 0.2, gap=SCANNER_GAP)
    assert first == []
    # Neither half is the code: the first is reported incomplete, the second is a scan of
    # what it holds (read_code will reject it), never the whole code glued back together.
    assert second[0] == IncompleteScan(CODE[:100], 0.0, end)
    assert [e.text for e in second[1:]] == [CODE[100:]]
    assert isinstance(second[1], Scan)


def test_typing_then_a_scan_after_a_pause_gives_both_in_order() -> None:
    parser = WedgeParser()
    typed, end = type_keys(parser, "note", start=0.0, gap=TYPIST_GAP)
    scanned, _ = type_keys(parser, CODE + ENTER, start=end + 0.5, gap=SCANNER_GAP)
    events = typed + scanned
    assert typed_text(events) == "note"
    assert events[-1] == Scan(CODE, end + 0.5, end + 0.5 + len(CODE) * SCANNER_GAP)


def test_enter_alone_is_handed_back() -> None:
    assert WedgeParser().feed(ENTER, 3.0) == [TypedKeys((KeyPress(ENTER, 3.0),))]


def test_tab_ends_a_scan_only_when_configured() -> None:
    with_tab = WedgeParser(terminators=(TAB,))
    events, _ = type_keys(with_tab, CODE + TAB, 0.0, SCANNER_GAP)
    assert [type(e) for e in events] == [Scan]
    # With Tab as the terminator, Enter is an ordinary key.
    assert with_tab.feed(ENTER, 10.0) == []

    enter_only = WedgeParser()
    events, end = type_keys(enter_only, CODE + TAB, 0.0, SCANNER_GAP)
    assert events == []
    assert enter_only.poll(end + 1.0) == [IncompleteScan(CODE + TAB, 0.0, end)]

    both = WedgeParser(terminators=(ENTER, TAB))
    assert [type(e) for e in type_keys(both, CODE + TAB, 0.0, SCANNER_GAP)[0]] == [Scan]
    assert [type(e) for e in type_keys(both, CODE + ENTER, 5.0, SCANNER_GAP)[0]] == [Scan]


def test_cr_lf_suffix_is_one_terminator_and_no_enter_leaks_to_the_ui() -> None:
    parser = WedgeParser()
    events, end = type_keys(parser, CODE + "\r\n", start=0.0, gap=SCANNER_GAP)
    assert [e.text for e in events] == [CODE]
    assert isinstance(events[0], Scan)
    # A person's Enter a moment later is theirs again.
    assert parser.feed(ENTER, end + 1.0) == [TypedKeys((KeyPress(ENTER, end + 1.0),))]


def test_keys_without_text_are_ignored_and_several_characters_count_as_keys() -> None:
    parser = WedgeParser()
    events: list[WedgeEvent] = []
    at = 0.0
    for chunk in ["", "GH", "", "1ABCDEFG", ENTER]:  # "" is Shift or Caps Lock
        events += parser.feed(chunk, at)
        at += SCANNER_GAP
    assert events == [Scan("GH1ABCDEFG", SCANNER_GAP, 4 * SCANNER_GAP)]


def test_a_clock_going_backwards_ends_the_burst() -> None:
    parser = WedgeParser()
    type_keys(parser, "ABCDEFGHIJ", start=100.0, gap=SCANNER_GAP)
    events = parser.feed("K", 1.0)
    assert events == [IncompleteScan("ABCDEFGHIJ", 100.0, 100.0 + 9 * SCANNER_GAP)]


def test_flush_releases_what_is_held() -> None:
    parser = WedgeParser()
    parser.feed("q", 0.0)
    assert parser.flush() == [TypedKeys((KeyPress("q", 0.0),))]
    assert parser.flush() == []


@pytest.mark.parametrize(
    "kwargs",
    [{"max_gap": 0.0}, {"min_length": 0}, {"terminators": ()}, {"terminators": ("x",)}],
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must"):
        WedgeParser(**kwargs)  # type: ignore[arg-type]


printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


@given(code=st.text(printable, min_size=8, max_size=300), gap=st.floats(0.0005, 0.049))
def test_any_fast_burst_with_enter_is_exactly_that_scan(code: str, gap: float) -> None:
    parser = WedgeParser(max_gap=0.05)
    events, end = type_keys(parser, code + ENTER, start=1.0, gap=gap)
    assert events == [Scan(code, 1.0, end)]


@given(
    keys=st.text(st.one_of(printable, st.just(ENTER)), max_size=40),
    gaps=st.lists(st.floats(0.0505, 2.0), min_size=40, max_size=40),
)
def test_slow_keys_are_never_a_scan_and_every_one_is_handed_back_once(
    keys: str, gaps: list[float]
) -> None:
    parser = WedgeParser(max_gap=0.05)
    events: list[WedgeEvent] = []
    at = 0.0
    for key, gap in zip(keys, gaps, strict=False):
        at += gap
        events += parser.feed(key, at)
    events += parser.flush()
    assert all(isinstance(e, TypedKeys) for e in events)
    assert typed_text(events) == keys
