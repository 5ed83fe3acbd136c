import pytest

from collapse_lib.exercises import CHECKERS, check, checker


def test_unanswered_exercise_is_reported_not_failed(capsys):
    assert check("ch0-ex-halflife", None) is None
    assert "no answer yet" in capsys.readouterr().out


def test_verdicts_do_not_reveal_the_answer(capsys):
    assert check("ch0-ex-halflife", 17) is True
    assert check("ch0-ex-halflife", 30) is False
    out = capsys.readouterr().out
    assert "correct" in out and "not yet" in out and "17" not in out.split("not yet")[1]
    assert check("ch0-ex-alpha", 0.4) is True
    assert check("ch0-ex-alpha", 0.1) is False
    assert check("ch0-ex-alpha", "a lot") is False


def test_unknown_exercise_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown exercise 'ch9-ex-x'; valid: 'ch0-ex-alpha'"):
        check("ch9-ex-x", 1)


def test_every_checker_label_names_a_chapter_exercise():
    from pathlib import Path

    text = "".join(p.read_text() for p in Path("chapters").glob("*.ipynb"))
    for label in CHECKERS:
        assert f":label: {label}" in text, label
    with pytest.raises(ValueError, match="already has a checker"):
        checker("ch0-ex-alpha")(lambda a: (True, ""))
