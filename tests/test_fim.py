"""FIM prompt windows: exact length, placement as in the paper, left-to-right fallback."""

from __future__ import annotations

import pytest

from apmae.lm.fim import SpecialIds, build_window, place, special_ids


def test_place_early_span_takes_the_first_window():
    assert place(10, 500, 253) == (10, 243)


def test_place_late_span_is_centred():
    assert place(400, 400, 253) == (126, 127)


def test_place_short_suffix_shifts_window_back():
    assert place(400, 20, 253) == (233, 20)


def test_place_too_short_file_is_skipped():
    assert place(100, 100, 253) is None


@pytest.mark.parametrize("where", [0.01, 0.5, 0.97])
def test_window_has_exact_length_and_markers(tiny_tokenizer, java_texts, where):
    text = java_texts["Inventory.java"]
    ids = special_ids(tiny_tokenizer)
    start = int(len(text) * where)
    end = start + 3
    w = build_window(tiny_tokenizer, text, start, end, 64, ids)
    assert w is not None
    assert len(w.input_ids) == 64
    assert w.input_ids[0] == ids.prefix and w.input_ids[-1] == ids.middle
    assert w.input_ids.count(ids.suffix) == 1
    assert tiny_tokenizer.decode(w.target_ids) == text[start:end]
    # the window's prefix ends right before the span, its suffix starts right after it
    assert text[:start].endswith(tiny_tokenizer.decode(w.prefix_ids))
    assert text[end:].startswith(tiny_tokenizer.decode(w.suffix_ids))
    if where == 0.01:  # early: the whole prefix of the file is in the window
        assert tiny_tokenizer.decode(w.prefix_ids) == text[:start]


def test_window_too_long_for_file_is_none(tiny_tokenizer, java_texts):
    text = java_texts["Util.java"]
    assert build_window(tiny_tokenizer, text, 10, 12, 4096) is None


def test_left_to_right_fallback_without_fim_tokens(tiny_tokenizer, java_texts):
    ids = SpecialIds(eos=special_ids(tiny_tokenizer).eos)  # a model without FIM tokens
    text = java_texts["Inventory.java"]
    start = len(text) - 20
    w = build_window(tiny_tokenizer, text, start, start + 4, 32, ids)
    assert w is not None and len(w.input_ids) == 32 and w.suffix_ids == []
    assert text[:start].endswith(tiny_tokenizer.decode(w.input_ids))
    assert build_window(tiny_tokenizer, text, 5, 9, 32, ids) is None  # too little before it
