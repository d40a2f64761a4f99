"""Notifications of new serious flags: a digest file, and e-mail or a webhook where configured."""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import re
import smtplib
import socket
import ssl
import urllib.parse
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from detector.flags import FlagQuery, read_flags
from detector.settings import settings
from detector.store import Store

# The SMTP password is read from an environment variable whose name the schedule file
# gives; whoever edits the schedule (a dashboard admin) must not be able to name another
# secret of the service (a database password, a cloud key) and have it sent to a server of
# their choosing, so only variables under this prefix may be named.
SMTP_PASSWORD_PREFIX = "DETECTOR_SMTP_"
# A webhook on a loopback, private or link-local address (a receiver on this host or the
# internal network, a cloud's metadata service) is allowed only when the service's own
# environment says so (``DETECTOR_WEBHOOK_ALLOW_PRIVATE``): the schedule file is edited
# from the dashboard, and its admin must not be able to make the scheduler POST to
# internal services.


def private_webhooks_allowed() -> bool:
    return settings().webhook_allow_private


class NotifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    digest_dir: str = "data/digests"
    min_severity: str = "high"
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "detector@localhost"
    smtp_to: list[str] = Field(default_factory=list)
    smtp_user: str | None = None
    # the name of an environment variable (DETECTOR_SMTP_...), never the secret
    smtp_password_env: str | None = None
    # certificates to verify the SMTP server's against (default: the system's)
    smtp_ca_file: str | None = None
    webhook_url: str | None = None  # http(s); internal addresses: DETECTOR_WEBHOOK_ALLOW_PRIVATE
    timeout_seconds: float = 10

    @field_validator("smtp_password_env")
    @classmethod
    def _password_variable(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(rf"{SMTP_PASSWORD_PREFIX}[A-Z0-9_]+", value):
            raise ValueError(
                f"{value!r}: the password's variable must be named {SMTP_PASSWORD_PREFIX}"
                "something (e.g. DETECTOR_SMTP_PASSWORD); other variables are not read"
            )
        return value

    @field_validator("webhook_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r}: a webhook is an http:// or https:// address")
        return value

    @model_validator(mode="after")
    def _public_webhook(self) -> NotifyConfig:
        if self.webhook_url and not private_webhooks_allowed():
            host = urllib.parse.urlsplit(self.webhook_url).hostname
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                return self  # a host name: checked when it is resolved, before each POST
            if not _public(address):
                raise ValueError(_not_public(host, str(address)))
        return self


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Not loopback, private, link-local (cloud metadata), shared, reserved or multicast."""
    return address.is_global and not address.is_multicast


def _not_public(host: str, address: str) -> str:
    return (
        f"webhook host {host} is {address}, a loopback, private or link-local address; "
        f"only sent there when the service's environment sets DETECTOR_WEBHOOK_ALLOW_PRIVATE=1"
    )


def new_serious_flags(store: Store, run_id: int, min_severity: str) -> list[dict]:
    """Flags first raised by this run at or above the severity (not suppressed), riskiest
    first."""
    query = FlagQuery(first_run=run_id, min_severity=min_severity)
    return read_flags(store, query).to_dicts()


# What makes Markdown inside a line: emphasis, code, links and images, raw HTML and
# autolinks, tables, strikethrough (and the escape itself). A value never starts a line
# (line breaks are removed), so block markers (#, -, +, 1.) need no escape, and dates
# and names stay readable in the e-mail, which carries the same text.
_MARKDOWN = re.compile(r"([\\`*_\[\]<>!|~])")
_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")


def plain(value: object) -> str:
    """A value as digest text: on one line (a line break in a logged name added lines
    of its own to the digest) and with Markdown's special characters escaped (a name
    could add bold "critical" lines, links or tracking images)."""
    text = "" if value is None else str(value)
    return _MARKDOWN.sub(r"\\\1", _BREAKS.sub(" ", text))


def _code(value: object) -> str:
    """A value inside a code span, where escapes show literally: one line, no backtick."""
    return _BREAKS.sub(" ", str(value)).replace("`", "'")


def digest_text(flags: list[dict], run_id: int) -> str:
    lines = [f"# {len(flags)} new serious flag(s) from run {run_id}", ""]
    for f in flags:
        lines.append(
            f"- **{plain(f['severity'])}** `{_code(f['rule_id'])}` "
            f"({plain(f['facility'] or '-')}, {plain(f['period_start'] or '-')}): "
            f"{plain(f['explanation'])}  \n  flag {plain(f['flag_id'])}"
        )
    return "\n".join(lines) + "\n"


def send(config: NotifyConfig, store: Store, run_id: int) -> dict:
    """Write the digest and deliver it; returns what was done (and any delivery error)."""
    flags = new_serious_flags(store, run_id, config.min_severity)
    done: dict = {"flags": len(flags)}
    if not flags:
        return done
    text = digest_text(flags, run_id)
    folder = Path(config.digest_dir)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"digest-{stamp}-run{run_id}.md"
    path.write_text(text, encoding="utf-8")
    done["digest"] = str(path)
    if config.smtp_host and config.smtp_to:
        try:
            msg = EmailMessage()
            msg["Subject"] = f"[detector] {len(flags)} new serious flag(s)"
            msg["From"], msg["To"] = config.smtp_from, ", ".join(config.smtp_to)
            msg.set_content(text)
            with smtplib.SMTP(
                config.smtp_host, config.smtp_port, timeout=config.timeout_seconds
            ) as smtp:
                if config.smtp_user and config.smtp_password_env:
                    # the server's certificate is verified before the password is sent
                    smtp.starttls(context=ssl.create_default_context(cafile=config.smtp_ca_file))
                    smtp.login(config.smtp_user, os.environ[config.smtp_password_env])
                smtp.send_message(msg)
            done["email"] = "sent"
        except (OSError, smtplib.SMTPException, KeyError) as exc:
            done["email"] = f"failed: {exc}"
    if config.webhook_url:
        # the flags' text fields escaped as in the digest: receivers render them as Markdown
        shown = [{k: plain(v) if isinstance(v, str) else v for k, v in f.items()} for f in flags]
        body = json.dumps({"run_id": run_id, "text": text, "flags": shown}, default=str).encode()
        try:
            done["webhook"] = _post(config, body)
        except (OSError, http.client.HTTPException, _Refused) as exc:
            done["webhook"] = f"failed: {exc}"
    return done


class _Refused(Exception):
    """A webhook address the settings do not allow."""


def _post(config: NotifyConfig, body: bytes) -> str:
    """POST ``body`` as JSON to the webhook; redirects are not followed.

    The host is resolved once, every address it resolves to is checked (unless
    ``DETECTOR_WEBHOOK_ALLOW_PRIVATE`` is set), and the connection goes to the address checked, so a
    name that resolves to an internal address, now or on a second lookup, is not reached.
    """
    parts = urllib.parse.urlsplit(config.webhook_url)
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    found = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    addresses = [info[4][0] for info in found]
    if not private_webhooks_allowed():
        for address in addresses:
            if not _public(ipaddress.ip_address(address.split("%")[0])):
                raise _Refused(_not_public(parts.hostname, address))
    pinned = addresses[0]
    conn = (
        http.client.HTTPSConnection(
            parts.hostname, port, timeout=config.timeout_seconds,
            context=ssl.create_default_context(),
        )
        if secure
        else http.client.HTTPConnection(parts.hostname, port, timeout=config.timeout_seconds)
    )  # fmt: skip
    conn._create_connection = lambda _address, timeout, source: socket.create_connection(
        (pinned, port), timeout, source
    )
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("POST", target, body=body, headers={"Content-Type": "application/json"})
        status = conn.getresponse().status
    finally:
        conn.close()
    return f"HTTP {status}" if 200 <= status < 300 else f"failed: HTTP {status}"
