"""When a step may go out and from which mailbox (pure functions of an injected `now`).

- Send windows are wall-clock hours on allowed ISO weekdays in the lead's time zone (from the
  lead, else the campaign's).
- Delays are calendar days or business days (Monday to Friday in that time zone).
- Daily caps per mailbox ramp up from `ramp_start` by `ramp_step` a day since the mailbox
  started sending, up to `daily_cap`.
- Rotation: a lead's first step goes from the mailbox with the most room left today (ties to
  the lowest id); follow-ups stay on the lead's mailbox so the thread holds together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

BUSINESS_DAYS = frozenset({1, 2, 3, 4, 5})
_MAX_SCAN_DAYS = 14


def zone(name: str | None, default: str = "UTC") -> ZoneInfo:
    """A time zone by IANA name; an unknown or empty name falls back to the default."""
    for candidate in (name, default, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


@dataclass(frozen=True)
class SendWindow:
    tz: ZoneInfo
    start: dt.time
    end: dt.time
    days: frozenset[int] = BUSINESS_DAYS

    def contains(self, now: dt.datetime) -> bool:
        local = now.astimezone(self.tz)
        return local.isoweekday() in self.days and self.start <= local.time() < self.end

    def next_open(self, now: dt.datetime) -> dt.datetime:
        """`now` if inside the window, else the start of the next window (as UTC)."""
        if self.contains(now):
            return now
        local = now.astimezone(self.tz)
        for offset in range(_MAX_SCAN_DAYS + 1):
            day = local.date() + dt.timedelta(days=offset)
            if day.isoweekday() not in self.days:
                continue
            opening = dt.datetime.combine(day, self.start, tzinfo=self.tz)
            if opening >= now:
                return opening.astimezone(dt.UTC)
            if offset == 0 and local.time() < self.end:
                return now
        raise ValueError("the send window never opens: choose at least one day and hours")


def add_delay(start: dt.datetime, days: int, business: bool, tz: ZoneInfo) -> dt.datetime:
    """`start` plus `days` calendar days, or business days counted in `tz` (UTC result)."""
    if not business:
        return start + dt.timedelta(days=days)
    local = start.astimezone(tz)
    remaining = days
    while remaining > 0:
        local += dt.timedelta(days=1)
        if local.isoweekday() in BUSINESS_DAYS:
            remaining -= 1
    return local.astimezone(dt.UTC)


def cap_for_day(
    daily_cap: int | None, ramp_start: int, ramp_step: int, started_on: dt.date, today: dt.date
) -> int | None:
    """Today's cap of a mailbox (None: no cap at all)."""
    if daily_cap is None:
        return None
    age = max(0, (today - started_on).days)
    return min(daily_cap, ramp_start + ramp_step * age)


@dataclass(frozen=True)
class MailboxLoad:
    id: int
    sent_today: int
    cap: int | None  # None: uncapped

    @property
    def room(self) -> float:
        return float("inf") if self.cap is None else self.cap - self.sent_today


def pick_mailbox(loads: Sequence[MailboxLoad], sticky: int | None) -> int | None:
    """The mailbox for the next message of a lead, or None if none has room today."""
    if sticky is not None:
        for load in loads:
            if load.id == sticky:
                return load.id if load.room > 0 else None
        return None
    open_ = [load for load in loads if load.room > 0]
    if not open_:
        return None
    best = min(open_, key=lambda load: (load.sent_today, -load.room, load.id))
    return best.id


def resume_after_ooo(
    now: dt.datetime, return_date: dt.date | None, default_days: int, tz: ZoneInfo
) -> dt.datetime:
    """When a paused lead resumes: the stated return date (local midnight), else a default."""
    if return_date is not None and return_date > now.astimezone(tz).date():
        return dt.datetime.combine(return_date, dt.time(0, 0), tzinfo=tz).astimezone(dt.UTC)
    return now + dt.timedelta(days=default_days)


def utc_day(now: dt.datetime) -> dt.date:
    return now.astimezone(dt.UTC).date()
