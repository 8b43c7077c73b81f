"""Flesch–Kincaid grade level, computed here (textstat's recent releases fetch data at run time).

grade = 0.39 × words/sentences + 11.8 × syllables/words − 15.59. Syllables are counted
as vowel groups, with a silent final 'e' dropped and at least one per word: the usual
approximation, good enough to keep patient letters at grade 6–8.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)|\n\s*\n|\n\s*-\s")


def syllables(word: str) -> int:
    w = word.lower().strip("'’-")
    if len(w) <= 3:
        return 1
    if w.endswith("e") and not w.endswith(("le", "ee")):
        w = w[:-1]
    return max(1, len(re.findall(r"[aeiouy]+", w)))


def fk_grade(text: str) -> float:
    words = _WORD.findall(text)
    if not words:
        return 0.0
    sentences = max(1, len([s for s in _SENTENCE_END.split(text) if _WORD.search(s)]))
    count = sum(syllables(w) for w in words)
    return 0.39 * len(words) / sentences + 11.8 * count / len(words) - 15.59
