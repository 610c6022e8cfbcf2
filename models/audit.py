"""4.1: the partnership's audit records, hash-chained so any edit, deletion or reordering shows."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, SQLModel, col, func, select

from models import deferred
from models.errors import InvalidInput
from models.tables import GENESIS, AuditEvent, AuditHead

STEP_SKIPPED = "step.skipped"
# Events that record a decision not to act rather than a change of their subject: they leave its
# revision as it was, so a skipped reminder does not make a case's waiting form stale.
NOT_CHANGES = frozenset({STEP_SKIPPED})


def canonical(value: Any) -> str:
    """The one JSON form that is hashed: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _content(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    organisations: str,
    before: str,
    after: str,
) -> str:
    return canonical(
        {
            "seq": seq,
            "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
            "actor": actor,
            "action": action,
            "subject": subject,
            "organisations": organisations,
            "before": before,
            "after": after,
        }
    )


def chain_hash(prev_hash: str, content: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{content}".encode()).hexdigest()


def event_hash(event: AuditEvent, *, seq: int | None = None) -> str:
    """The hash `event` should carry, optionally as if it sat at position `seq`."""
    content = _content(
        seq=event.seq if seq is None else seq,
        at=event.at,
        actor=event.actor,
        action=event.action,
        subject=event.subject,
        organisations=event.organisations,
        before=event.before,
        after=event.after,
    )
    return chain_hash(event.prev_hash, content)


@dataclass(frozen=True)
class Recorded:
    """An audit event as this transaction wrote it (`append`): its columns, as stored."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    organisations: str
    before: str
    after: str
    prev_hash: str
    hash: str


def append(
    session: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    before: Any,
    after: Any,
    organisations: Iterable[str] = (),
    head: AuditHead | None = None,
) -> tuple[Recorded, AuditHead]:
    """Add one event after the head, in the caller's transaction; the head row is locked. `head`:
    the head row as this transaction already locked it (returned by an earlier `append`; read
    back if a savepoint since changed it and rolled back), so it is not locked again."""
    if head is None:
        head = session.exec(select(AuditHead).where(AuditHead.id == 1).with_for_update()).one()
    row: dict[str, Any] = {
        "seq": head.seq + 1,
        "at": at,
        "actor": actor,
        "action": action,
        "subject": subject,
        "organisations": ",".join(sorted(set(organisations))),
        "before": canonical(before),
        "after": canonical(after),
        "prev_hash": head.hash,
    }
    # Hashed with `at` to the microsecond, as stored, so the hash survives the round trip.
    row["hash"] = chain_hash(head.hash, _content(**{k: row[k] for k in _HASHED}))
    # The event is written by a Core statement in the caller's transaction (or savepoint: it
    # rolls back with it), not by the session's flush (nothing else refers to it), deferred
    # with the transaction's other events until one is read or it commits (`deferred`). The head
    # row (locked) is set in the session as it will be written, and its UPDATE deferred too, the
    # latest in place of the one before: one UPDATE however many events were appended since the
    # head was last written (before a read of it, before the transaction commits, before a
    # savepoint begins and when one is released), so a savepoint rolled back drops it and the
    # head reads back as it was when the savepoint began (`UnitOfWork.savepoint`).
    deferred.defer(session, _ADD_EVENT, row)
    deferred.defer(session, _ADVANCE, {"b_seq": row["seq"], "b_hash": row["hash"]}, latest=True)
    set_committed_value(head, "seq", row["seq"])
    set_committed_value(head, "hash", row["hash"])
    return Recorded(**row), head


_HASHED = ("seq", "at", "actor", "action", "subject", "organisations", "before", "after")
EVENTS: sa.Table = SQLModel.metadata.tables["audit_event"]  # AuditEvent, for Core statements
_HEAD: sa.Table = SQLModel.metadata.tables["audit_head"]
# Built once (their cache keys too): every audited change defers both (`append`), the first
# written many rows at a time, the other once with the last row.
_ADD_EVENT = EVENTS.insert()
_ADVANCE = (
    _HEAD.update()
    .where(_HEAD.c.id == 1)
    .values(seq=sa.bindparam("b_seq"), hash=sa.bindparam("b_hash"))
)


@dataclass(frozen=True)
class Finding:
    """One way the stored trail differs from the trail as written."""

    seq: int
    kind: str  # edited | deleted | reordered | truncated | checkpoint
    message: str


def verify(session: Session, *, checkpoint: tuple[int, str] | None = None) -> list[Finding]:
    """Walk the chain; name each event that was edited, deleted or moved, and a cut tail."""
    events = list(session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))))
    head = session.exec(select(AuditHead).where(AuditHead.id == 1)).one()
    findings = list(_walk(events))
    last = events[-1] if events else None
    last_seq = last.seq if last else 0
    if head.seq > last_seq:
        findings.append(
            Finding(
                last_seq + 1,
                "truncated",
                f"events {last_seq + 1}..{head.seq} are missing: the chain head says {head.seq} "
                "events were written",
            )
        )
    elif last is not None and last.hash != head.hash and not findings:
        findings.append(
            Finding(last.seq, "edited", f"event {last.seq} does not match the recorded chain head")
        )
    if checkpoint is not None:
        findings.extend(_against_checkpoint(events, checkpoint))
    return findings


def _walk(events: Sequence[AuditEvent]) -> Iterator[Finding]:
    # Pass 1: which position was each row written at? Its own if its hash holds; another one if
    # its hash holds there (it was moved); unknown if it was edited.
    written_at: dict[int, str] = {}
    valid: set[int] = set()
    found: list[Finding] = []
    for event in events:
        if event_hash(event) == event.hash:
            written_at[event.seq] = event.hash
            valid.add(event.seq)
            continue
        moved_from = _original_position(event, len(events) + 1)
        if moved_from is None:
            found.append(
                Finding(event.seq, "edited", f"event {event.seq} was changed after it was written")
            )
        else:
            written_at[moved_from] = event.hash
            found.append(
                Finding(
                    event.seq,
                    "reordered",
                    f"event {event.seq} holds what was written as event {moved_from} (reordered)",
                )
            )
    # Pass 2: gaps, and links that do not match the row written just before.
    present = {e.seq for e in events}
    expected = 1
    for seq in sorted(present):
        if seq > expected:
            missing = (
                f"event {expected} is"
                if seq == expected + 1
                else f"events {expected}..{seq - 1} are"
            )
            found.append(Finding(expected, "deleted", f"{missing} missing (deleted)"))
        expected = seq + 1
    for event in events:
        before = GENESIS if event.seq == 1 else written_at.get(event.seq - 1)
        if event.seq in valid and before is not None and event.prev_hash != before:
            found.append(
                Finding(
                    event.seq,
                    "reordered",
                    f"event {event.seq} does not follow event {event.seq - 1} "
                    "(events were replaced or reordered)",
                )
            )
    yield from sorted(found, key=lambda f: f.seq)


def _original_position(event: AuditEvent, upper: int) -> int | None:
    for seq in range(1, upper + 1):
        if seq != event.seq and event_hash(event, seq=seq) == event.hash:
            return seq
    return None


def _against_checkpoint(events: Sequence[AuditEvent], checkpoint: tuple[int, str]) -> list[Finding]:
    count, digest = checkpoint
    at = next((e for e in events if e.seq == count), None)
    if at is None:
        return [
            Finding(count, "checkpoint", f"event {count} of the checkpoint is not in the trail")
        ]
    if at.hash != digest:
        return [
            Finding(
                count,
                "checkpoint",
                f"event {count} differs from the published checkpoint: the trail was rewritten",
            )
        ]
    return []


def parse_checkpoint(text: str) -> tuple[int, str]:
    """'SEQ:HASH' as printed by `wct audit checkpoint`."""
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise InvalidInput(
            f"checkpoint '{text}' is not SEQ:SHA256 (as `wct audit checkpoint` prints)"
        )
    return int(seq), digest


def checkpoint(session: Session) -> tuple[int, str]:
    head = session.exec(select(AuditHead).where(AuditHead.id == 1)).one()
    return head.seq, head.hash


EXPORT_FIELDS = [
    "seq",
    "at",
    "actor",
    "action",
    "subject",
    "organisations",
    "before",
    "after",
    "prev_hash",
    "hash",
]


def export_rows(session: Session, *, organisation: str | None = None) -> list[dict[str, Any]]:
    """The records any member may inspect (4.1), optionally only those about one organisation."""
    rows = []
    for event in session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))):
        orgs = event.organisations.split(",") if event.organisations else []
        if organisation is not None and organisation not in orgs:
            continue
        rows.append(
            {
                "seq": event.seq,
                "at": event.at.isoformat(),
                "actor": event.actor,
                "action": event.action,
                "subject": event.subject,
                "organisations": orgs,
                "before": json.loads(event.before),
                "after": json.loads(event.after),
                "prev_hash": event.prev_hash,
                "hash": event.hash,
            }
        )
    return rows


def to_jsonl(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(canonical(row) + "\n" for row in rows)


def to_csv(rows: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = dict(row)
        flat["organisations"] = ";".join(row["organisations"])
        flat["before"] = canonical(row["before"])
        flat["after"] = canonical(row["after"])
        writer.writerow(flat)
    return out.getvalue()


def revision(session: Session, subject: str) -> int:
    """How many audited changes `subject` has had: a case's version, for waits that go stale."""
    return session.exec(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.subject == subject, col(AuditEvent.action).not_in(NOT_CHANGES))
    ).one()
