"""The review workflow: statuses, notes, assignees and suppressions, with an audit trail.

Every action checks the actor's role here, on the server side, whatever the page shows,
and writes one audit row (who, when, old -> new, note) in the same transaction as the
change. Nothing in the dashboard edits or deletes audit rows. Review state is keyed by
flag id, so it survives rule re-runs and restarts.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from detector import auth, lazy
from detector.auth import Actor, require
from detector.i18n import N_, SOURCE, translate, words
from detector.ledger import AUDITED, GENESIS, audit_hash
from detector.mapping import fold_values
from detector.store import Store, upsert

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy.module("polars")

STATUSES = ("new", "in_review", "confirmed", "dismissed", "needs_external_verification")
DISMISS_REASONS = ("false_positive", "benign", "duplicate", "data_error")
# Statuses that keep a flag in the open review queue.
OPEN_STATUSES = ("new", "in_review")
# The writers' lock a review action takes: the audit trail is one hash chain, written in
# turn (on a shared store, beside ingests and rule runs, which take other locks).
REVIEW_WRITERS = ("reviews",)


class ReviewError(ValueError):
    """An action that is not allowed as asked (unknown status, missing reason...).

    The message is a catalogue entry with its values, so that the dashboard says it in
    the reader's language (:meth:`said`); ``str()`` is the English."""

    def __init__(self, message: str, **values):
        self.template = message
        self.values = values
        super().__init__(self.said(SOURCE))

    def said(self, lang: str) -> str:
        """The message in ``lang``; a list of coded values (statuses, reasons, kinds) is
        said in words."""
        shown = {
            k: ", ".join(words(c, lang) or "" for c in v) if isinstance(v, (list, tuple)) else v
            for k, v in self.values.items()
        }
        return translate(lang, self.template).format(**shown)


def log_action(
    con,
    flag_id: str | None,
    acted_at: datetime,
    actor: str,
    action: str,
    old: str | None,
    new: str | None,
    note: str | None,
) -> None:
    """Append one audit row, chained to the one before by hash (so that an edited or
    deleted row is found by ``verify_audit``). Call it inside the write transaction that
    makes the change it records."""
    last = con.execute(
        "SELECT seq, entry_hash FROM review_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1"
    ).fetchall()
    seq, prev = (last[0][0] + 1, last[0][1]) if last else (1, GENESIS)
    row = {
        "seq": seq,
        "flag_id": flag_id,
        "acted_at": acted_at,
        "actor": actor,
        "action": action,
        "old": old,
        "new": new,
        "note": note,
        "prev_hash": prev,
    }
    con.execute(
        "INSERT INTO review_log (seq, flag_id, acted_at, actor, action, old, new, note, "
        "prev_hash, entry_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [*(row[k] for k in AUDITED), audit_hash(row)],
    )


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _current(con, flag_id: str) -> dict:
    if not con.execute("SELECT 1 FROM flags WHERE flag_id = ?", [flag_id]).fetchall():
        raise ReviewError(N_("no flag {flag}"), flag=flag_id)
    names = ("status", "assignee", "reason", "note", "reopen_on_new")
    rows = con.execute(
        f"SELECT {', '.join(names)} FROM reviews WHERE flag_id = ?", [flag_id]
    ).fetchall()
    if not rows:
        return dict(zip(names, ("new", None, None, None, False), strict=True))
    return dict(zip(names, rows[0], strict=True))


def _save(
    con,
    flag_id: str,
    actor: Actor,
    state: dict,
    action: str,
    old: str | None,
    new: str | None,
    note: str | None,
) -> None:
    now = _now()
    upsert(
        con,
        "reviews",
        ("flag_id",),
        {
            "flag_id": flag_id,
            "status": state["status"],
            "assignee": state["assignee"],
            "reason": state["reason"],
            "note": state["note"],
            "updated_at": now,
            "updated_by": actor.username,
            "reopen_on_new": bool(state["reopen_on_new"]),
        },
    )
    log_action(con, flag_id, now, actor.username, action, old, new, note)


def set_status(
    store: Store,
    actor: Actor,
    flag_id: str,
    status: str,
    note: str | None = None,
    reason: str | None = None,
    reopen: bool | None = None,
) -> None:
    """Move a flag to a status; dismissing needs one of DISMISS_REASONS. ``reopen`` (when
    given) sets whether the closed case re-opens on new occurrences, in the same
    transaction. Everything is checked before anything is written: a refused review writes
    no audit row, and only what changed is written (saving the same review twice adds
    nothing to the trail)."""
    require(actor, "review")
    if status not in STATUSES or status == "new":
        raise ReviewError(N_("status must be one of {statuses}"), statuses=STATUSES[1:])
    if status == "dismissed" and reason not in DISMISS_REASONS:
        raise ReviewError(N_("dismissing needs a reason: {reasons}"), reasons=DISMISS_REASONS)
    with store.write(REVIEW_WRITERS) as con:
        state = _current(con, flag_id)
        old = _status_value(state["status"], state["reason"])
        reason = reason if status == "dismissed" else None
        new = _status_value(status, reason)
        changed = new != old or bool(note and note != state["note"])
        reopen_changed = reopen is not None and bool(reopen) != bool(state["reopen_on_new"])
        if reopen_changed:
            before = bool(state["reopen_on_new"])
            state["reopen_on_new"] = bool(reopen)
            _save(con, flag_id, actor, state, "reopen_on_new", _yes_no(before),
                  _yes_no(bool(reopen)), None)  # fmt: skip
        if changed:
            state.update(status=status, reason=reason, note=note or state["note"])
            _save(con, flag_id, actor, state, "status", old, new, note)


def _status_value(status: str, reason: str | None) -> str:
    """A status as the audit trail records it: ``dismissed (benign)`` with its reason."""
    return status + (f" ({reason})" if status == "dismissed" and reason else "")


def _yes_no(on: bool) -> str:
    return "yes" if on else "no"


def add_note(store: Store, actor: Actor, flag_id: str, note: str) -> None:
    require(actor, "review")
    if not note.strip():
        raise ReviewError(N_("the note is empty"))
    with store.write(REVIEW_WRITERS) as con:
        state = _current(con, flag_id)
        state["note"] = note
        _save(con, flag_id, actor, state, "note", None, None, note)


def assign(store: Store, actor: Actor, flag_id: str, assignee: str | None) -> None:
    """Assign a flag to a user of this database's dashboard (None: to nobody); a name that
    is no user is refused, so that a flag is never assigned to a typo."""
    require(actor, "review")
    if assignee:
        users = auth.load(store.users)["credentials"]["usernames"]
        if assignee not in users:
            known = ", ".join(sorted(users)) or "none yet"
            raise ReviewError(
                N_("no user {user} to assign to (users: {known})"), user=repr(assignee), known=known
            )
    with store.write(REVIEW_WRITERS) as con:
        state = _current(con, flag_id)
        old = state["assignee"]
        state["assignee"] = assignee or None
        _save(con, flag_id, actor, state, "assign", old, assignee, None)


def reopen_on_new(store: Store, actor: Actor, flag_id: str, on: bool) -> None:
    """Whether a closed case re-opens when new occurrences of it arrive (off by default:
    a case dismissed once stays dismissed). Nothing is written when it is already so."""
    require(actor, "review")
    with store.write(REVIEW_WRITERS) as con:
        state = _current(con, flag_id)
        old = bool(state["reopen_on_new"])
        if old == bool(on):
            return
        state["reopen_on_new"] = bool(on)
        _save(con, flag_id, actor, state, "reopen_on_new", _yes_no(old), _yes_no(on), None)


# What a suppression can name, and how a flag is matched to it: exactly, never by a
# substring of its text (suppressing "Ana" must not hide "Mariana").
ENTITY_KINDS = ("facility", "person", "plate")


def entity_key(kind: str, entity: str) -> str:
    """The stored key a suppression matches: the facility code as written, a person's
    folded name key (as ``visits.name_key`` / ``escorted_key``), a plate's plate key."""
    if kind == "facility":
        return entity.strip()
    if kind == "plate":
        return "".join(c for c in entity.upper() if c.isascii() and c.isalnum())
    return fold_values(pl.Series([entity])).item()


def suppress(
    store: Store,
    actor: Actor,
    rule_id: str,
    entity: str,
    until: date,
    note: str | None = None,
    kind: str = "facility",
) -> None:
    """Hide a rule's flags about one entity until a date: a facility (flags at it), a
    person (flags on any visit by them or escorted by them) or a plate. Matching is exact
    on the entity's key."""
    require(actor, "review")
    if kind not in ENTITY_KINDS:
        raise ReviewError(N_("the entity must be one of: {kinds}"), kinds=ENTITY_KINDS)
    if not entity.strip():
        raise ReviewError(N_("name the entity to suppress the rule for"))
    if until <= _now().date():
        raise ReviewError(N_("a suppression must end in the future"))
    key = entity_key(kind, entity)
    if not key:
        raise ReviewError(
            N_("{entity} leaves nothing to match as a {kind}"), entity=repr(entity), kind=[kind]
        )
    with store.write(REVIEW_WRITERS) as con:
        con.execute(
            "INSERT INTO suppressions (rule_id, entity, until, created_by, created_at, "
            "note, entity_kind, entity_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [rule_id, entity.strip(), until, actor.username, _now(), note, kind, key],
        )
        log_action(
            con,
            None,
            _now(),
            actor.username,
            "suppress",
            None,
            f"{rule_id} for {kind} {entity.strip()} until {until}",
            note,
        )


# SQL: whether flag ``f`` is hidden by a suppression in force.
SUPPRESSED = """EXISTS (
    SELECT 1 FROM suppressions s
    WHERE s.rule_id = f.rule_id AND s.until >= current_date AND (
        (coalesce(s.entity_kind, 'facility') = 'facility'
         AND f.facility = coalesce(s.entity_key, s.entity))
     OR (s.entity_kind = 'person' AND list_has_any(f.record_keys, (
            SELECT coalesce(list(v.record_key), []) FROM visits v
            WHERE v.name_key = s.entity_key OR v.escorted_key = s.entity_key)))
     OR (s.entity_kind = 'plate' AND list_has_any(f.record_keys, (
            SELECT coalesce(list(v.record_key), []) FROM visits v
            WHERE v.plate_key = s.entity_key)))))"""


def history(store: Store, flag_id: str | None = None) -> list[dict]:
    """The audit trail, newest first (one flag's, or all)."""
    where, params = ("WHERE flag_id = ?", [flag_id]) if flag_id else ("", [])
    with store.read() as con:
        cur = con.execute(
            f"SELECT flag_id, acted_at, actor, action, old, new, note "
            f"FROM review_log {where} ORDER BY acted_at DESC",
            params,
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
