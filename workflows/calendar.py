"""The Danish business calendar that workflow deadlines are counted in.

Workflows import this module through `workflow.unsafe.imports_passed_through()`, so everything
here must be deterministic and do no I/O when called: the time zone and the `holidays` translation
catalogue are loaded once at import, and later calls only compute.
"""

from __future__ import annotations

import threading
from calendar import isleap
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
from dateutil.easter import easter

from schemas.duration import Duration
from schemas.policy import Policy, parse_extra_holiday

COPENHAGEN = ZoneInfo("Europe/Copenhagen")

STORE_BEDEDAG = "Store bededag"
EXTRA_HOLIDAY = "Lokal fridag"
# Store Bededag was abolished by law from 2024 (lov nr. 132 af 28/02/2023).
_LAST_STORE_BEDEDAG_YEAR = 2023

# Built at import so the gettext catalogue is read now, not inside a workflow. The language is
# fixed: left unset, `holidays` picks it from the LANG variables, which differ between machines.
# Default categories only (public): Grundlovsdag, Juleaften and Nytårsaften are not public
# holidays and come from the policy's extra holidays instead. `holidays` covers DK up to 2100.
_NATIONAL = holidays.country_holidays("DK", language="da")
# Asking for a new year makes `_NATIONAL` add it to itself; workflows may run on several threads.
_NATIONAL_LOCK = threading.Lock()


def _national_holidays(year: int) -> dict[date, str]:
    """Danish public holidays of one year, with Store Bededag enforced whatever the library says."""
    with _NATIONAL_LOCK:
        _ = date(year, 1, 1) in _NATIONAL  # expands `_NATIONAL` with this year
        days = {day: name for day, name in _NATIONAL.items() if day.year == year}
    bededag = easter(year) + timedelta(days=26)
    if year <= _LAST_STORE_BEDEDAG_YEAR:
        days.setdefault(bededag, STORE_BEDEDAG)
    else:
        days.pop(bededag, None)
    return days


def _require_aware(instant: datetime, name: str) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {instant!r}")


class BusinessCalendar:
    """Working days in Denmark: Monday to Friday, except public and the organisation's own holidays.

    Holidays are computed per year on first use and kept in the instance; that is deterministic, so
    it is safe inside a workflow.
    """

    def __init__(self, extra_holidays: Iterable[str] = ()) -> None:
        """`extra_holidays` are policy days off: "MM-DD" every year, "YYYY-MM-DD" once."""
        self._recurring: set[tuple[int, int]] = set()
        self._once: set[date] = set()
        for text in extra_holidays:
            year, month, day = parse_extra_holiday(text)
            if year is None:
                self._recurring.add((month, day))
            else:
                self._once.add(date(year, month, day))
        self._years: dict[int, dict[date, str]] = {}

    @classmethod
    def for_policy(cls, policy: Policy) -> BusinessCalendar:
        """The calendar an organisation's trials run under."""
        return cls(policy.extra_holidays)

    def _holidays(self, year: int) -> dict[date, str]:
        days = self._years.get(year)
        if days is None:
            days = _national_holidays(year)
            for month, day in self._recurring:
                if month == 2 and day == 29 and not isleap(year):
                    continue  # "02-29" only exists in leap years
                days.setdefault(date(year, month, day), EXTRA_HOLIDAY)
            for once in self._once:
                if once.year == year:
                    days.setdefault(once, EXTRA_HOLIDAY)
            self._years[year] = days
        return days

    def holidays_in(self, year: int) -> dict[date, str]:
        """Every holiday of `year` by date (weekends included), national and local, with names.

        A local day that is also a public holiday keeps the public holiday's name.
        """
        return dict(sorted(self._holidays(year).items()))

    def is_working_day(self, d: date) -> bool:
        """Monday to Friday and neither a public holiday nor one of the policy's extra days."""
        if isinstance(d, datetime):
            # A datetime's date depends on its zone; make the caller pick the local date.
            raise TypeError("is_working_day takes a date; use today(instant) for an instant")
        return d.weekday() < 5 and d not in self._holidays(d.year)

    def next_working_day(self, d: date) -> date:
        """The first working day strictly after `d`."""
        d += timedelta(days=1)
        while not self.is_working_day(d):
            d += timedelta(days=1)
        return d

    def add(self, start: datetime, duration: Duration) -> datetime:
        """The instant `duration` after `start`, returned in UTC.

        Exact units (seconds to weeks) are elapsed time, so "1 day" across a DST change is 24 hours.
        N working days lands on the N-th working day strictly after start's Copenhagen date, at
        the same Copenhagen wall-clock time; a start on a weekend or holiday therefore counts from
        the next working day ("1 working day" from Saturday 10:00 is Monday 10:00 when Monday is
        a working day). 0 working days returns `start` itself (in UTC).
        """
        _require_aware(start, "start")
        if not duration.is_working_days:
            return start.astimezone(UTC) + duration.exact()
        if duration.amount == 0:
            return start.astimezone(UTC)
        local = start.astimezone(COPENHAGEN)
        day = local.date()
        for _ in range(duration.amount):
            day = self.next_working_day(day)
        # Re-localise the wall-clock time on the target date so DST changes keep the local time.
        # fold=0: for a nonexistent or repeated wall time zoneinfo's default choice applies.
        target = datetime.combine(day, local.time().replace(fold=0), tzinfo=COPENHAGEN)
        return target.astimezone(UTC)

    def working_days_between(self, start: datetime, end: datetime) -> float:
        """Working days elapsed from `start` to `end`, for metrics such as approval time.

        Defined on Copenhagen dates as the number of working days d with
        start_date < d <= end_date, so the same day is 0, and Friday to the next Monday is 1.
        The time of day is ignored. If `end` is before `start` the result is negative.
        """
        _require_aware(start, "start")
        _require_aware(end, "end")
        if end < start:
            return -self.working_days_between(end, start)
        first, last = self.today(start), self.today(end)
        count = 0
        day = first + timedelta(days=1)
        while day <= last:
            if self.is_working_day(day):
                count += 1
            day += timedelta(days=1)
        return float(count)

    @staticmethod
    def local_midnight(d: date) -> datetime:
        """The UTC instant `d` begins in Copenhagen; planned start dates are local days."""
        return datetime.combine(d, time(0), tzinfo=COPENHAGEN).astimezone(UTC)

    @staticmethod
    def today(now: datetime) -> date:
        """The Copenhagen date of an instant: the day that counts for working-day rules."""
        _require_aware(now, "now")
        return now.astimezone(COPENHAGEN).date()
