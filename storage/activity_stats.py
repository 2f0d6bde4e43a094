"""Activities a person may manage, and the invitation counts a coordinator reads.

The counting query is a plain `select`, run by the chat summary (async) and by
`warmline activities` (sync) alike, so both show the same figures.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Select, false, func, select

from storage.models import Activity, Invitation, Person, Role

ALL_CHANNELS = "all"


def visible_activities(person: Person) -> Select[Activity]:
    """Admin: every activity; coordinator: their township's; anyone else: none."""
    query = select(Activity)
    if person.role == Role.ADMIN:
        return query
    if person.role == Role.COORDINATOR and person.township_id is not None:
        return query.where(Activity.township_id == person.township_id)
    return query.where(false())


@dataclass
class Counts:
    invited: int = 0
    yes: int = 0  # confirmed places
    waitlisted: int = 0  # said yes while full
    no: int = 0
    maybe: int = 0
    no_answer: int = 0
    attended: int = 0

    def add(self, other: Counts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def count_query(activity_ids: Iterable[int]) -> Select[int, str, str | None, bool, bool | None, int]:
    return (
        select(Invitation.activity_id, Invitation.channel, Invitation.rsvp, Invitation.waitlisted,
               Invitation.attended, func.count())
        .where(Invitation.activity_id.in_(list(activity_ids)))
        .group_by(Invitation.activity_id, Invitation.channel, Invitation.rsvp,
                  Invitation.waitlisted, Invitation.attended)
    )


def fold_counts(rows: Iterable[Any]) -> dict[int, dict[str, Counts]]:
    """{activity id: {channel: Counts, ..., "all": Counts}} from `count_query` rows."""
    out: dict[int, dict[str, Counts]] = {}
    for activity_id, channel, rsvp, waitlisted, attended, n in rows:
        c = Counts(invited=n)
        if rsvp == "yes":
            if waitlisted:
                c.waitlisted = n
            else:
                c.yes = n
        elif rsvp == "no":
            c.no = n
        elif rsvp == "maybe":
            c.maybe = n
        else:
            c.no_answer = n
        if attended:
            c.attended = n
        per = out.setdefault(activity_id, {ALL_CHANNELS: Counts()})
        per.setdefault(channel, Counts()).add(c)
        per[ALL_CHANNELS].add(c)
    return out
