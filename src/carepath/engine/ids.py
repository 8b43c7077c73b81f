"""Deterministic identity (from pathway, version, patient, step and occurrence): same inputs, same ids, on any machine."""

from __future__ import annotations

import hashlib


def output_id(prefix: str, pathway: str, version: str, patient: str, name: str, key: str) -> str:
    digest = hashlib.sha256("\x1f".join((pathway, version, patient, name, key)).encode()).hexdigest()
    return f"{prefix}-{digest[:20]}"
