"""The vocabulary: every reason in the spec exists and reads as a sentence for gate staff."""

from __future__ import annotations

from shared.domain import Direction, TicketStatus, VerdictReason, VerdictResult

SPEC_REASONS = {
    "invalid_code",
    "unknown_key",
    "wrong_event",
    "not_found",
    "revoked",
    "expired",
    "superseded",
    "already_checked_in",
    "not_yet_valid",
    "no_longer_valid",
    "ownership_mismatch",
    "device_revoked",
    # Issue 16: check-in lists.
    "not_on_list",
    "rule_failed",
}


def test_reasons_are_exactly_the_specs() -> None:
    assert {reason.value for reason in VerdictReason} == SPEC_REASONS


def test_every_reason_has_its_own_plain_sentence() -> None:
    sentences = [reason.sentence for reason in VerdictReason]
    assert len(set(sentences)) == len(sentences)
    for sentence in sentences:
        assert sentence[0].isupper()
        assert sentence.endswith(".")
        assert "_" not in sentence  # no codes leaking into what staff read


def test_wire_values_are_snake_case_words() -> None:
    assert [r.value for r in VerdictResult] == ["admitted", "rejected"]
    assert [d.value for d in Direction] == ["entry", "exit"]
    assert {s.value for s in TicketStatus} == {"active", "checked_in", "revoked", "expired"}
