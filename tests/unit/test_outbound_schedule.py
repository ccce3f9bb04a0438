"""Send windows, business-day delays, ramped caps, rotation and out-of-office resumption."""

from __future__ import annotations

import datetime as dt

from paitho_tenant.outbound import schedule
from paitho_tenant.outbound.schedule import MailboxLoad, SendWindow

UTC = dt.UTC
BERLIN = schedule.zone("Europe/Berlin")
NEW_YORK = schedule.zone("America/New_York")


def _window(tz: object = BERLIN) -> SendWindow:
    assert isinstance(tz, type(BERLIN))
    return SendWindow(tz, dt.time(9), dt.time(17))


def test_window_is_in_the_leads_time_zone() -> None:
    """09:00–17:00 means local hours: 07:30 UTC is inside in Berlin (summer), not in New York."""
    now = dt.datetime(2027, 6, 7, 7, 30, tzinfo=UTC)  # a Monday
    assert _window(BERLIN).contains(now)
    assert not _window(NEW_YORK).contains(now)
    assert _window(NEW_YORK).next_open(now) == dt.datetime(2027, 6, 7, 13, 0, tzinfo=UTC)


def test_window_skips_weekends() -> None:
    """Friday evening's next opening is Monday 09:00 local."""
    friday_evening = dt.datetime(2027, 6, 11, 18, 0, tzinfo=UTC)
    assert _window().next_open(friday_evening) == dt.datetime(2027, 6, 14, 7, 0, tzinfo=UTC)


def test_business_day_delay() -> None:
    """Two business days after a Thursday is the Monday; calendar days just add."""
    thursday = dt.datetime(2027, 6, 10, 8, 0, tzinfo=UTC)
    assert schedule.add_delay(thursday, 2, True, BERLIN).date() == dt.date(2027, 6, 14)
    assert schedule.add_delay(thursday, 2, False, BERLIN).date() == dt.date(2027, 6, 12)


def test_cap_ramps_up() -> None:
    """A new mailbox starts at ramp_start and grows by ramp_step a day up to the cap."""
    start = dt.date(2027, 6, 1)
    caps = [schedule.cap_for_day(30, 10, 5, start, start + dt.timedelta(days=d)) for d in range(6)]
    assert caps == [10, 15, 20, 25, 30, 30]
    assert schedule.cap_for_day(None, 10, 5, start, start) is None


def test_rotation_balances_and_threads_stay_put() -> None:
    """First steps go to the least-used mailbox; a follow-up waits for its own mailbox."""
    loads = [MailboxLoad(1, 3, 5), MailboxLoad(2, 2, 5), MailboxLoad(3, 5, 5)]
    assert schedule.pick_mailbox(loads, None) == 2
    assert schedule.pick_mailbox(loads, 3) is None
    assert schedule.pick_mailbox(loads, 1) == 1
    assert schedule.pick_mailbox([MailboxLoad(1, 5, 5)], None) is None
    assert schedule.pick_mailbox([MailboxLoad(4, 10_000, None)], None) == 4


def test_rotation_alternates() -> None:
    """Picking repeatedly while counting spreads first steps evenly over the mailboxes."""
    sent = {1: 0, 2: 0}
    for _ in range(10):
        chosen = schedule.pick_mailbox([MailboxLoad(i, n, 100) for i, n in sent.items()], None)
        assert chosen is not None
        sent[chosen] += 1
    assert sent == {1: 5, 2: 5}


def test_out_of_office_resume() -> None:
    """A stated return date resumes that day; none (or a past one) waits the default."""
    now = dt.datetime(2027, 6, 7, 12, 0, tzinfo=UTC)
    back = schedule.resume_after_ooo(now, dt.date(2027, 6, 14), 7, BERLIN)
    assert back == dt.datetime(2027, 6, 13, 22, 0, tzinfo=UTC)
    assert schedule.resume_after_ooo(now, None, 7, BERLIN) == now + dt.timedelta(days=7)
    assert schedule.resume_after_ooo(now, dt.date(2027, 6, 1), 3, BERLIN) == now + dt.timedelta(
        days=3
    )


def test_unknown_zone_falls_back() -> None:
    """An unknown time zone name falls back to the default rather than failing the send."""
    assert schedule.zone("Not/AZone", "Europe/Berlin") == BERLIN
    assert str(schedule.zone(None)) == "UTC"
