"""Password hashes: argon2id (RFC 9106) through `cryptography`, which the lock already
holds, in the PHC string format (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), so the cost
parameters travel with each hash and can be raised later without breaking old ones."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

# OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane (≈ 30 ms here).
MEMORY_KIB = 19 * 1024
ITERATIONS = 2
LANES = 1
MAX_PASSWORD = 1024   # bytes: longer input is refused before hashing (no hashing-cost abuse)
MIN_PASSWORD = 12     # characters


class WeakPassword(ValueError):
    """The password is refused; the message says why."""


def check_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise WeakPassword(f"the password needs at least {MIN_PASSWORD} characters")
    if len(password.encode()) > MAX_PASSWORD:
        raise WeakPassword(f"the password may be at most {MAX_PASSWORD} bytes")


def hash_password(password: str) -> str:
    check_strength(password)
    kdf = Argon2id(salt=os.urandom(16), length=32, iterations=ITERATIONS, lanes=LANES, memory_cost=MEMORY_KIB)
    return kdf.derive_phc_encoded(password.encode())


def verify_password(password: str, encoded: str) -> bool:
    data = password.encode()
    if len(data) > MAX_PASSWORD or not encoded.startswith("$argon2id$"):
        return False
    try:
        Argon2id.verify_phc_encoded(data, encoded)
    except (InvalidKey, ValueError):
        return False
    return True


# Verified against when the user name is unknown, so a wrong name costs as long as a
# wrong password (no user enumeration by timing).
_DUMMY: list[str] = []


def dummy_verify(password: str) -> None:
    if not _DUMMY:
        _DUMMY.append(hash_password("x" * MIN_PASSWORD))
    verify_password(password, _DUMMY[0])
