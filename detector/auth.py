"""Local dashboard users: bcrypt-hashed passwords with roles, in a YAML file beside the data;
what each role may do (checked on the server side by every action).

On first start with no users an ``admin`` with a random password is created and the
password is written to a file only its owner can read (``admin-password.txt``). The
cookie key that signs re-login cookies is random too and never leaves the data folder.
"""

from __future__ import annotations

import functools
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import yaml

from detector.i18n import LANGUAGES
from detector.settings import settings
from detector.store import home_dir

ROLES = ("admin", "auditor", "viewer")
# What each role may do.
PERMISSIONS = {
    "admin": {"read", "review", "upload", "export", "admin"},
    "auditor": {"read", "review", "upload", "export"},
    "viewer": {"read"},
}


@dataclass(frozen=True)
class Actor:
    """Who acts: the dashboard login, or the CLI user."""

    username: str
    role: str


def require(actor: Actor, permission: str) -> None:
    """Raise PermissionError unless the actor's role grants the permission."""
    if permission not in PERMISSIONS.get(actor.role, set()):
        raise PermissionError(f"{actor.username} ({actor.role}) may not {permission}")


def users_file(db: str | Path) -> Path:
    """The users file of a store (its path or lake URL): ``$DETECTOR_USERS``, else
    ``users.yaml`` beside the database (a lake's: beside its shared data folder, so that
    every dashboard replica knows the same users)."""
    return settings().users or home_dir(db) / "users.yaml"


def load(path: Path) -> dict:
    if not path.exists():
        return {"credentials": {"usernames": {}}, "cookie": {}}
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def save(path: Path, config: dict) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def add_user(
    path: Path, username: str, role: str, password: str | None = None, name: str | None = None
) -> str:
    """Create or reset a user; returns the (generated) password, to be shown once."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    password = password or secrets.token_urlsafe(12)
    config = load(path)
    config["credentials"]["usernames"][username] = {
        "first_name": name or username,
        "last_name": "",
        "email": f"{username}@localhost",
        # The hash streamlit-authenticator checks; hashed here with bcrypt itself, because
        # importing the authenticator outside a Streamlit run prints runtime warnings.
        "password": bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt()).decode("ascii"),
        "roles": [role],
        "failed_login_attempts": 0,
        "logged_in": False,
    }
    save(path, config)
    return password


def role(path: Path, username: str) -> str | None:
    """A user's role, or None when there is no such user (any more)."""
    user = load(path)["credentials"]["usernames"].get(username)
    return (user.get("roles") or ["viewer"])[0] if user else None


@functools.cache
def _nobody() -> bytes:
    return bcrypt.hashpw(b"no such user", bcrypt.gensalt())


def check_password(path: Path, username: str, password: str) -> str | None:
    """The user's role when the password is theirs, else None. An unknown name costs the
    same bcrypt check as a known one, so the time taken does not tell which names exist."""
    user = load(path)["credentials"]["usernames"].get(username)
    stored = user["password"].encode("ascii") if user else _nobody()
    matches = bcrypt.checkpw(password.encode("utf-8"), stored)
    return role(path, username) if user and matches else None


def set_language(path: Path, username: str, lang: str) -> None:
    """Keep a user's dashboard language with the user (``es`` or ``en``)."""
    if lang not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
    config = load(path)
    user = config["credentials"]["usernames"].get(username)
    if user is None:
        raise ValueError(f"no dashboard user {username!r}")
    user["language"] = lang
    save(path, config)


def language(path: Path, username: str) -> str | None:
    """The language the user chose, or None (the configured default then applies)."""
    user = load(path)["credentials"]["usernames"].get(username) or {}
    return user.get("language")


def ensure(path: Path) -> tuple[dict, str | None]:
    """The users config, creating the admin and a cookie key on first start.

    Returns (config, the new admin password or None when users already existed).
    """
    config = load(path)
    created = None
    if not config["credentials"]["usernames"]:
        created = add_user(path, "admin", "admin", name="Administrator")
        config = load(path)
    if not config.get("cookie", {}).get("key"):
        config["cookie"] = {
            "name": "detector_auth",
            "key": secrets.token_hex(32),
            "expiry_days": 0.5,
        }
        save(path, config)
    return config, created


def store_first_password(users: Path, password: str) -> Path:
    """Write the generated first admin password to a file beside ``users.yaml`` readable by
    its owner only, and return its path: consoles are often redirected into logs others
    can read, so the password itself is never printed."""
    secret = users.with_name("admin-password.txt")
    secret.touch(mode=0o600)
    os.chmod(secret, 0o600)
    secret.write_text(password + "\n", encoding="utf-8")
    return secret
