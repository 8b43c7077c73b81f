"""Why a ledger cannot be used: what the user must fix, or a server that did not answer."""

from __future__ import annotations


class LedgerProblem(Exception):
    """The ledger cannot be used as it is (corrupt, missing while letters exist, another
    kind of database): the message names it and what to do; the user must act (exit 1)."""


class LedgerUnavailable(Exception):
    """The ledger's database server did not answer (exit 69)."""

    def __init__(self, service: str, detail: str) -> None:
        self.service, self.detail = service, detail
        super().__init__(f"{service} did not answer: {detail}")
