"""Names just outside the valid ones: misspellings of real names, random text, and
hostile strings (markup, paths, control characters, code)."""

from __future__ import annotations

import typing

from hypothesis import strategies as st

HOSTILE = [
    "", " ", "[/]", "[bold]x[/bold]", "../x", "a/b", "a\\b", "\x00", ".hidden", "a\nb", "\t",
    "\x1b[31mred", "\u202eevil", "x" * 300, "😀" * 80, "__class__", "Lambda", "os.system",
    "tf_keras.layers.Lambda", "__import__('os').system('id')", "${HOME}", "%s%n", "null",
]  # fmt: skip
hostile = st.sampled_from(HOSTILE)


@st.composite
def typo(draw, word: str) -> str:
    """A misspelling: a character dropped, doubled, swapped, replaced or added; case; plural."""
    i = draw(st.integers(0, max(len(word) - 1, 0)))
    letter = draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz_-. "))
    ops = {
        "drop": word[:i] + word[i + 1 :],
        "double": word[:i] + word[i : i + 1] * 2 + word[i + 1 :],
        "swap": word[:i] + word[i + 1 : i + 2] + word[i : i + 1] + word[i + 2 :],
        "replace": word[:i] + letter + word[i + 1 :],
        "insert": word[:i] + letter + word[i:],
        "case": word.swapcase() if word.lower() != word.upper() else word + "X",
        "plural": word[:-1] if word.endswith("s") else word + "s",
        "dash": word.replace("_", "-") if "_" in word else word + "_",
    }
    return ops[draw(st.sampled_from(sorted(ops)))]


def not_in(valid: typing.Iterable[str], real: typing.Iterable[str] = ()) -> st.SearchStrategy:
    """Names outside `valid`: typos of valid (and `real`) names, random text, hostile ones."""
    valid = set(valid)
    typos = st.sampled_from(sorted(valid | set(real))).flatmap(typo)
    return st.one_of(typos, st.text(max_size=20), hostile).filter(lambda n: n not in valid)
