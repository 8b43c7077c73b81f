"""The email channel's SMTP settings from a Prefect `EmailServerCredentials` block
(prefect-email), for sites that keep their secrets in Prefect: CAREPATH_SMTP_BLOCK names
the block. Only the server's address and login come from it; the letters themselves never
pass through Prefect. The runtime resolves the settings once where a run starts
(`smtp_for_run`) and hands them down in the `RunSpec`, so the sinks never reach up here."""

from __future__ import annotations

import os
from collections.abc import Mapping

from carepath.compile.compiled import CompiledPathway
from carepath.orchestrator.emission import channel_of
from carepath.sinks.email import SMTP_BLOCK_ENV, SmtpSettings, SmtpSettingsError

_SECURITY = {"SSL": "ssl", "STARTTLS": "starttls", "INSECURE": "none"}


def settings_from_credentials(credentials, sender: str | None, attempts: int = 4) -> SmtpSettings:  # noqa: ANN001
    """SmtpSettings from an EmailServerCredentials; the sender defaults to its username."""
    server = credentials.smtp_server
    host = getattr(server, "value", server)
    kind = credentials.smtp_type
    name = getattr(kind, "name", str(kind)).upper()
    if name not in _SECURITY:
        raise SmtpSettingsError(f"the EmailServerCredentials block's smtp_type {kind!r} is not SSL, STARTTLS or INSECURE")
    port = credentials.smtp_port or getattr(kind, "value", None)
    password = credentials.password.get_secret_value() if credentials.password is not None else None
    sender = sender or credentials.username
    if not sender:
        raise SmtpSettingsError("set CAREPATH_SMTP_FROM: the EmailServerCredentials block has no username to send as")
    return SmtpSettings(str(host), int(port), _SECURITY[name], sender, credentials.username or None,
                        password or None, attempts)


def settings_from_block(block: str, sender: str | None, attempts: int = 4) -> SmtpSettings:
    from prefect_email import EmailServerCredentials

    try:
        credentials = EmailServerCredentials.load(block)
    except ValueError as exc:
        raise SmtpSettingsError(f"no EmailServerCredentials block {block!r} in Prefect ({exc})") from None
    return settings_from_credentials(credentials, sender, attempts)


def smtp_for_run(compiled: CompiledPathway, env: Mapping[str, str] | None = None) -> SmtpSettings | None:
    """The email channel's settings for a run: from the block CAREPATH_SMTP_BLOCK names, else
    from CAREPATH_SMTP_*; None when this run's letters do not go by email."""
    env = os.environ if env is None else env
    if channel_of(compiled) != "email":
        return None
    if block := env.get(SMTP_BLOCK_ENV):
        return settings_from_block(block, env.get("CAREPATH_SMTP_FROM") or None,
                                   int(env.get("CAREPATH_SMTP_ATTEMPTS") or 4))
    return SmtpSettings.from_env(env)
