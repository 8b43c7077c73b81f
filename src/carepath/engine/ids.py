"""Deterministic identity: same inputs, same ids, on any machine.

An id is derived from (pathway id, patient, rule/step, occurrence key). The pathway
version is provenance, not identity: work that two versions share keeps its id, so a
completion recorded under the old version closes it under the new one and a letter sent
under the old one is never sent again.

Ids minted before that rule hashed the version too (`legacy_output_id`); events files
keep naming them for ever, so the planner still recognises them (see engine/aliases.py).
"""

from __future__ import annotations

import hashlib
import re

# A task or letter id as `output_id` writes it; keys of derived work embed the id of the
# work they derive from (an escalation of an overdue task, a window conflict).
ID_PATTERN = re.compile(r"\b[tl]-[0-9a-f]{20}\b")


def _hashed(prefix: str, parts: tuple[str, ...]) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return f"{prefix}-{digest[:20]}"


def output_id(prefix: str, pathway: str, patient: str, name: str, key: str) -> str:
    return _hashed(prefix, (pathway, patient, name, key))


def legacy_output_id(prefix: str, pathway: str, version: str, patient: str, name: str, key: str) -> str:
    """The id the same output had when ids included the pathway version (ledger revisions
    before 0004): only for recognising ids recorded then."""
    return _hashed(prefix, (pathway, version, patient, name, key))
