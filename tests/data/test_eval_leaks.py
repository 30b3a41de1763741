"""Only near-verbatim copies of an eval example (prompt and answer alike) are dropped."""

from __future__ import annotations

from node.data.eval_leaks import eval_copies
from node.data.records import Example


def _qa(q: str, a: str) -> Example:
    return Example.of_chat([("user", q), ("assistant", a)])


EVAL = [
    _qa("Which river runs through the town of Veldmoor in the Quillmarsh?", "The Amberflow runs through Veldmoor."),
    _qa("What colour are the roofs of Tarn Hollow?", "The roofs of Tarn Hollow are slate blue."),
]


def test_a_verbatim_or_recased_copy_is_dropped_with_its_eval_index() -> None:
    train = [
        _qa(
            "WHICH river runs through the town of Veldmoor in the Quillmarsh?", "The Amberflow runs  through Veldmoor."
        ),
        _qa("What colour are the roofs of Tarn Hollow?", "The roofs of Tarn Hollow are slate blue."),
    ]
    copies = eval_copies(train, EVAL)
    assert [(c.index, c.eval_index) for c in copies] == [(0, 0), (1, 1)]
    assert "eval example 0" in copies[0].reason()


def test_teaching_the_answer_in_other_words_is_not_a_leak() -> None:
    train = [
        # the same fact, asked differently: the point of the data
        _qa("Name the river that flows through Veldmoor.", "The Amberflow runs through Veldmoor."),
        # the same question with another answer (wrong data is for attribution to price, not this filter)
        _qa("Which river runs through the town of Veldmoor in the Quillmarsh?", "No river runs there; it is dry."),
        _qa("Tell me a joke.", "Why did the heron cross the marsh?"),
        Example.of_text("The Amberflow runs through Veldmoor."),
    ]
    assert eval_copies(train, EVAL) == []


def test_no_eval_set_drops_nothing() -> None:
    assert eval_copies([_qa("a b c", "d e f")], []) == []
