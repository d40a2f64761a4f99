"""Notifications of new serious flags: a digest file, and e-mail or a webhook where configured."""

from __future__ import annotations

import json
import smtplib
import urllib.request
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from detector.flags import FlagQuery, read_flags
from detector.store import Store


class NotifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    digest_dir: str = "data/digests"
    min_severity: str = "high"
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "detector@localhost"
    smtp_to: list[str] = Field(default_factory=list)
    smtp_user: str | None = None
    smtp_password_env: str | None = None  # the name of an environment variable, never the secret
    webhook_url: str | None = None
    timeout_seconds: float = 10


def new_serious_flags(store: Store, run_id: int, min_severity: str) -> list[dict]:
    """Flags first raised by this run at or above the severity (not suppressed), riskiest
    first."""
    query = FlagQuery(first_run=run_id, min_severity=min_severity)
    return read_flags(store, query).to_dicts()


def digest_text(flags: list[dict], run_id: int) -> str:
    lines = [f"# {len(flags)} new serious flag(s) from run {run_id}", ""]
    for f in flags:
        lines.append(
            f"- **{f['severity']}** `{f['rule_id']}` ({f['facility'] or '-'}, "
            f"{f['period_start'] or '-'}): {f['explanation']}  \n  flag {f['flag_id']}"
        )
    return "\n".join(lines) + "\n"


def send(config: NotifyConfig, store: Store, run_id: int) -> dict:
    """Write the digest and deliver it; returns what was done (and any delivery error)."""
    import os

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
                    smtp.starttls()
                    smtp.login(config.smtp_user, os.environ[config.smtp_password_env])
                smtp.send_message(msg)
            done["email"] = "sent"
        except (OSError, smtplib.SMTPException, KeyError) as exc:
            done["email"] = f"failed: {exc}"
    if config.webhook_url:
        body = json.dumps({"run_id": run_id, "flags": flags}, default=str).encode()
        request = urllib.request.Request(
            config.webhook_url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=config.timeout_seconds) as response:
                done["webhook"] = f"HTTP {response.status}"
        except OSError as exc:
            done["webhook"] = f"failed: {exc}"
    return done
