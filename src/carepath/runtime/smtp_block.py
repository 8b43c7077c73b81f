"""The email channel's SMTP settings from a Prefect `EmailServerCredentials` block
(prefect-email), for sites that keep their secrets in Prefect: CAREPATH_SMTP_BLOCK names
the block. Only the server's address and login come from it; the letters themselves never
pass through Prefect."""

from __future__ import annotations

from carepath.sinks.email import SmtpSettings, SmtpSettingsError

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
