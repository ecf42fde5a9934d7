"""The synthetic gate-camera frames that the decoder tests and benchmark stand on."""

from __future__ import annotations

import numpy as np
import pytest
import segno

from scanner_app.core.synthetic_frames import (
    SyntheticFrame,
    render_qr,
    synthetic_background,
    synthetic_frame,
    synthetic_set,
    ticket_like_texts,
)
from shared.ticket_code import CODE_CHARS, PREFIX


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return ticket_like_texts(4, seed=11)


@pytest.fixture(scope="module")
def frames(texts: list[str]) -> list[SyntheticFrame]:
    return list(synthetic_set(texts, 12, seed=5))


def _same(a: SyntheticFrame, b: SyntheticFrame) -> bool:
    return (
        a.image.tobytes() == b.image.tobytes()
        and a.text == b.text
        and a.corners == b.corners
        and a.params == b.params
    )


def test_ticket_like_texts_have_the_ticket_code_shape() -> None:
    texts = ticket_like_texts(20, seed=3)
    assert len(set(texts)) == 20
    for text in texts:
        assert len(text) == CODE_CHARS == 259
        assert text.startswith(PREFIX)
        assert set(text[len(PREFIX) :]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    assert ticket_like_texts(20, seed=3) == texts


def test_a_ticket_code_is_version_9_level_m_alphanumeric(texts: list[str]) -> None:
    expected = segno.make_qr(texts[0], error="m", mode="alphanumeric", boost_error=False)
    assert (expected.version, expected.error, expected.mode) == (9, "M", "alphanumeric")

    image = render_qr(texts[0], module_px=1, border=0)

    assert np.array_equal(image == 0, np.array(expected.matrix, dtype=bool))


def test_render_qr_draws_modules_and_a_white_quiet_zone(texts: list[str]) -> None:
    image = render_qr(texts[0], module_px=5)

    assert image.dtype == np.uint8
    assert image.shape == ((53 + 2 * 4) * 5, (53 + 2 * 4) * 5)
    assert set(np.unique(image)) == {0, 255}
    quiet = 4 * 5
    assert (image[:quiet] == 255).all()
    assert (image[-quiet:] == 255).all()
    assert (image[:, :quiet] == 255).all()
    assert (image[:, -quiet:] == 255).all()
    assert (image[quiet : quiet + 5, quiet : quiet + 5] == 0).all()  # finder pattern corner
    assert render_qr(texts[0], module_px=2, border=0).shape == (106, 106)


def test_render_qr_rejects_nonsense_sizes(texts: list[str]) -> None:
    with pytest.raises(ValueError, match="module_px"):
        render_qr(texts[0], module_px=0)


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
def test_frames_have_the_requested_size(texts: list[str], size: tuple[int, int]) -> None:
    frame = synthetic_frame(texts[0], np.random.default_rng(1), size)

    assert frame.image.shape == (size[1], size[0], 3)
    assert frame.image.dtype == np.uint8
    assert frame.image.flags.c_contiguous


def test_the_same_seed_gives_byte_identical_frames(
    texts: list[str], frames: list[SyntheticFrame]
) -> None:
    again = list(synthetic_set(texts, 3, seed=5))
    assert all(_same(a, b) for a, b in zip(again, frames[:3], strict=True))


def test_another_seed_gives_other_frames(texts: list[str], frames: list[SyntheticFrame]) -> None:
    other = list(synthetic_set(texts, 3, seed=6))
    for a, b in zip(other, frames[:3], strict=True):
        assert a.image.tobytes() != b.image.tobytes()
        assert a.params != b.params


def test_a_set_made_in_slices_is_the_same_set(
    texts: list[str], frames: list[SyntheticFrame]
) -> None:
    tail = list(synthetic_set(texts, 2, seed=5, start=10))
    assert all(_same(a, b) for a, b in zip(tail, frames[10:], strict=True))
    assert [frame.text for frame in frames] == (texts * 3)


def test_a_background_is_a_seeded_frame_of_the_requested_size() -> None:
    image = synthetic_background(np.random.default_rng(2), (1920, 1080))
    again = synthetic_background(np.random.default_rng(2), (1920, 1080))

    assert image.shape == (1080, 1920, 3)
    assert image.dtype == np.uint8
    assert image.tobytes() == again.tobytes()


def test_the_code_lands_inside_the_frame_at_its_module_size(frames: list[SyntheticFrame]) -> None:
    for frame in frames:
        corners = np.array(frame.corners)
        height, width = frame.image.shape[:2]
        assert corners.shape == (4, 2)
        assert (corners >= 0).all()
        assert (corners[:, 0] < width).all()
        assert (corners[:, 1] < height).all()
        side = 53 * frame.params.module_px
        edges = np.linalg.norm(corners - np.roll(corners, -1, axis=0), axis=1)
        assert (np.abs(edges - side) <= 0.15 * side).all()  # rotation keeps it, perspective ±6 %


def test_params_stay_within_the_documented_ranges(frames: list[SyntheticFrame]) -> None:
    for frame in frames:
        p = frame.params
        assert p.version == 9
        assert 4 <= p.module_px <= 8
        assert 0 <= p.angle_deg <= 360
        assert 0 <= p.perspective <= 0.06
        assert 10 <= p.ink_level <= 90
        assert 150 <= p.paper_level <= 245
        assert 0.55 <= p.gain <= 1.15
        assert 0.3 <= p.blur_sigma <= 0.3 * p.module_px
        assert p.motion_blur_px == 0 or 1 <= p.motion_blur_px <= 0.6 * p.module_px
        assert 2 <= p.noise_sigma <= 8
        assert 40 <= p.jpeg_quality <= 90
    angles = [frame.params.angle_deg for frame in frames]
    assert max(angles) - min(angles) > 90  # rotations really vary


def test_a_frame_too_small_for_the_code_is_refused(texts: list[str]) -> None:
    with pytest.raises(ValueError, match="too small"):
        synthetic_frame(texts[0], np.random.default_rng(0), (320, 240))


def test_an_empty_text_list_is_refused() -> None:
    with pytest.raises(ValueError, match="texts"):
        list(synthetic_set([], 1, seed=0))
    assert list(synthetic_set([], 0, seed=0)) == []
