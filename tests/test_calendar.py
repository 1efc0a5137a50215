"""The business calendar against Danish public holidays written out by hand, not by the library."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from schemas.duration import Duration
from schemas.policy import Policy
from workflows import calendar as calendar_module
from workflows.calendar import BusinessCalendar

CPH = ZoneInfo("Europe/Copenhagen")

# Written out by hand from the Danish calendar, so a change in the `holidays` library shows up here.
REFERENCE_HOLIDAYS: dict[int, list[tuple[int, int]]] = {
    year: [(int(md[:2]), int(md[3:])) for md in days.split()]
    for year, days in {
        2025: "01-01 04-17 04-18 04-20 04-21 05-29 06-08 06-09 12-25 12-26",
        2026: "01-01 04-02 04-03 04-05 04-06 05-14 05-24 05-25 12-25 12-26",
        2027: "01-01 03-25 03-26 03-28 03-29 05-06 05-16 05-17 12-25 12-26",
    }.items()
}
REFERENCE_DATES = [date(y, m, d) for y, days in REFERENCE_HOLIDAYS.items() for m, d in days]


def wd(amount: int) -> Duration:
    return Duration.model_validate(f"{amount} working days")


def cph(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A Copenhagen wall-clock instant."""
    return datetime(year, month, day, hour, minute, tzinfo=CPH)


@pytest.fixture(scope="module")
def national() -> BusinessCalendar:
    return BusinessCalendar()


@pytest.fixture(scope="module")
def local() -> BusinessCalendar:
    return BusinessCalendar.for_policy(
        Policy(extra_holidays=("06-05", "12-24", "12-31", "2026-11-30"))
    )


@pytest.mark.parametrize("year", sorted(REFERENCE_HOLIDAYS))
def test_holidays_are_exactly_the_reference(national: BusinessCalendar, year: int) -> None:
    expected = {date(year, m, d) for m, d in REFERENCE_HOLIDAYS[year]}
    reported = national.holidays_in(year)
    assert set(reported) == expected
    assert all(isinstance(name, str) and name for name in reported.values())


@pytest.mark.parametrize("day", REFERENCE_DATES, ids=str)
def test_reference_holidays_are_not_working_days(national: BusinessCalendar, day: date) -> None:
    assert not national.is_working_day(day)


@pytest.mark.parametrize("year", sorted(REFERENCE_HOLIDAYS))
def test_every_other_day_is_working_iff_weekday(national: BusinessCalendar, year: int) -> None:
    holidays = {date(year, m, d) for m, d in REFERENCE_HOLIDAYS[year]}
    day = date(year, 1, 1)
    while day.year == year:
        expected = day.weekday() < 5 and day not in holidays
        assert national.is_working_day(day) is expected, day
        day += timedelta(days=1)


def test_days_around_easter_2026(national: BusinessCalendar) -> None:
    assert national.is_working_day(date(2026, 4, 1))  # Wednesday before Skærtorsdag
    assert national.is_working_day(date(2026, 4, 7))  # Tuesday after Anden påskedag
    assert national.is_working_day(date(2026, 5, 13))  # before Kristi himmelfartsdag
    assert national.is_working_day(date(2026, 5, 15))  # the Friday after it
    assert national.is_working_day(date(2026, 5, 26))  # after Anden pinsedag


def test_store_bededag_abolished_from_2024(national: BusinessCalendar) -> None:
    assert not national.is_working_day(date(2023, 5, 5))
    assert date(2023, 5, 5) in national.holidays_in(2023)
    assert national.is_working_day(date(2024, 4, 26))
    assert national.is_working_day(date(2025, 5, 16))
    assert date(2024, 4, 26) not in national.holidays_in(2024)


def test_store_bededag_enforced_whatever_the_library_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A library that got it backwards: Store Bededag in 2024 and missing in 2023.
    wrong = {date(2023, 1, 1): "Nytårsdag", date(2024, 4, 26): "Store bededag"}
    monkeypatch.setattr(calendar_module, "_NATIONAL", wrong)
    calendar = BusinessCalendar()
    assert calendar.is_working_day(date(2024, 4, 26))
    assert not calendar.is_working_day(date(2023, 5, 5))
    assert calendar.holidays_in(2023)[date(2023, 5, 5)] == "Store bededag"


def test_holiday_names_are_danish_whatever_the_locale(
    national: BusinessCalendar, local: BusinessCalendar
) -> None:
    assert national.holidays_in(2026)[date(2026, 12, 25)] == "Juledag"
    assert national.holidays_in(2023)[date(2023, 5, 5)] == "Store bededag"
    assert local.holidays_in(2026)[date(2026, 11, 30)] == "Lokal fridag"


@pytest.mark.parametrize("day", [date(2025, 6, 5), date(2025, 12, 24), date(2025, 12, 31)])
def test_local_days_off_only_with_policy(
    national: BusinessCalendar, local: BusinessCalendar, day: date
) -> None:
    assert national.is_working_day(day)
    assert not local.is_working_day(day)
    assert day in local.holidays_in(2025)
    assert day not in national.holidays_in(2025)


def test_recurring_local_days_every_year(local: BusinessCalendar) -> None:
    for year in (2026, 2027, 2030):
        for month, day in ((6, 5), (12, 24), (12, 31)):
            assert not local.is_working_day(date(year, month, day))


def test_one_off_local_day(national: BusinessCalendar, local: BusinessCalendar) -> None:
    assert national.is_working_day(date(2026, 11, 30))  # a Monday
    assert not local.is_working_day(date(2026, 11, 30))
    assert local.is_working_day(date(2027, 11, 30))
    assert local.is_working_day(date(2026, 12, 1))
    expected = {date(2026, m, d) for m, d in REFERENCE_HOLIDAYS[2026]}
    expected |= {date(2026, 6, 5), date(2026, 11, 30), date(2026, 12, 24), date(2026, 12, 31)}
    assert set(local.holidays_in(2026)) == expected


def test_invalid_extra_holiday_is_rejected() -> None:
    with pytest.raises(ValueError):
        BusinessCalendar(["13-01"])


def test_is_working_day_refuses_datetimes(national: BusinessCalendar) -> None:
    with pytest.raises(TypeError):
        national.is_working_day(datetime(2026, 4, 1, tzinfo=UTC))


def test_add_across_easter(national: BusinessCalendar) -> None:
    # Wednesday 1 April 2026 10:00 + 1 working day: Thu–Mon are Easter, so Tuesday 7 April.
    result = national.add(cph(2026, 4, 1, 10), wd(1))
    assert result == cph(2026, 4, 7, 10)
    assert result.tzinfo is UTC


def test_add_friday_to_monday(national: BusinessCalendar) -> None:
    assert national.add(cph(2026, 3, 13, 9, 30), wd(1)) == cph(2026, 3, 16, 9, 30)
    assert national.add(cph(2026, 3, 13, 9, 30), wd(5)) == cph(2026, 3, 20, 9, 30)


def test_add_keeps_local_time_across_dst(national: BusinessCalendar) -> None:
    start = cph(2026, 3, 27, 10)  # Friday, CET (UTC+1); summer time starts Sunday 29 March
    result = national.add(start, wd(1))
    assert result.astimezone(CPH) == cph(2026, 3, 30, 10)
    assert result == datetime(2026, 3, 30, 8, tzinfo=UTC)  # CEST, UTC+2
    assert result - start == timedelta(days=3, hours=-1)
    # And back to winter time (25 October 2026).
    autumn = national.add(cph(2026, 10, 23, 10), wd(1))
    assert autumn == datetime(2026, 10, 26, 9, tzinfo=UTC)


def test_add_from_utc_uses_the_copenhagen_date(national: BusinessCalendar) -> None:
    # 23:30 UTC Friday is already Saturday 00:30 in Copenhagen: count from Saturday.
    start = datetime(2026, 3, 13, 23, 30, tzinfo=UTC)
    assert national.add(start, wd(1)) == cph(2026, 3, 16, 0, 30)


def test_add_from_saturday(national: BusinessCalendar) -> None:
    saturday = cph(2026, 3, 14, 10)
    assert national.add(saturday, wd(1)) == cph(2026, 3, 16, 10)
    assert national.add(saturday, wd(3)) == cph(2026, 3, 18, 10)
    # Saturday before Easter: Monday is Anden påskedag, so 1 working day is Tuesday.
    assert national.add(cph(2026, 4, 4, 10), wd(1)) == cph(2026, 4, 7, 10)


def test_add_counts_policy_days(local: BusinessCalendar) -> None:
    # Tuesday 23 December 2025 + 1: 24th local, 25th and 26th national, weekend → Monday 29th.
    assert local.add(cph(2025, 12, 23, 12), wd(1)) == cph(2025, 12, 29, 12)
    # Monday 29 December + 2: 30th, then 31st (local) and 1 January skipped → Friday 2 January.
    assert local.add(cph(2025, 12, 29, 12), wd(2)) == cph(2026, 1, 2, 12)


def test_add_zero_working_days_is_unchanged(national: BusinessCalendar) -> None:
    start = cph(2026, 4, 4, 13, 45)  # even on a Saturday
    result = national.add(start, wd(0))
    assert result == start
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("30 seconds", timedelta(seconds=30)),
        ("5 minutes", timedelta(minutes=5)),
        ("2 hours", timedelta(hours=2)),
        ("1 day", timedelta(days=1)),
        ("3 days", timedelta(days=3)),
        ("2 weeks", timedelta(weeks=2)),
    ],
)
def test_exact_units_add_exactly(national: BusinessCalendar, text: str, delta: timedelta) -> None:
    # Saturday before the DST change and across Easter: exact units ignore both.
    start = cph(2026, 3, 28, 12)
    result = national.add(start, Duration.model_validate(text))
    assert result - start == delta
    assert result.tzinfo is UTC


def test_one_exact_day_across_dst_is_24_hours(national: BusinessCalendar) -> None:
    result = national.add(cph(2026, 3, 28, 12), Duration.model_validate("1 day"))
    assert result.astimezone(CPH) == cph(2026, 3, 29, 13)


def test_add_requires_aware_start(national: BusinessCalendar) -> None:
    with pytest.raises(ValueError):
        national.add(datetime(2026, 4, 1, 10), wd(1))


def test_working_days_between(national: BusinessCalendar, local: BusinessCalendar) -> None:
    wed = cph(2026, 4, 1, 9)
    assert national.working_days_between(wed, cph(2026, 4, 1, 17)) == 0
    assert national.working_days_between(wed, cph(2026, 4, 6, 23)) == 0  # all Easter
    assert national.working_days_between(wed, cph(2026, 4, 7, 8)) == 1
    assert national.working_days_between(cph(2026, 3, 13, 16), cph(2026, 3, 16, 8)) == 1
    assert national.working_days_between(cph(2026, 3, 9, 9), cph(2026, 3, 23, 9)) == 10
    assert national.working_days_between(cph(2026, 3, 23, 9), cph(2026, 3, 9, 9)) == -10
    assert local.working_days_between(cph(2025, 12, 23, 9), cph(2026, 1, 2, 9)) == 3
    # Copenhagen dates, not UTC dates: 23:30 UTC Monday is already Tuesday locally (CET).
    monday_late = datetime(2026, 3, 16, 23, 30, tzinfo=UTC)
    assert national.working_days_between(cph(2026, 3, 16, 9), monday_late) == 1


def test_working_days_between_agrees_with_add(national: BusinessCalendar) -> None:
    start = cph(2026, 3, 25, 11)
    for n in range(0, 40):
        assert national.working_days_between(start, national.add(start, wd(n))) == n


def test_local_midnight(national: BusinessCalendar) -> None:
    assert national.local_midnight(date(2026, 1, 15)) == datetime(2026, 1, 14, 23, tzinfo=UTC)
    assert national.local_midnight(date(2026, 7, 15)) == datetime(2026, 7, 14, 22, tzinfo=UTC)
    assert national.local_midnight(date(2026, 3, 29)) == datetime(2026, 3, 28, 23, tzinfo=UTC)
    assert national.local_midnight(date(2026, 3, 30)) == datetime(2026, 3, 29, 22, tzinfo=UTC)
    assert national.local_midnight(date(2026, 7, 15)).tzinfo is UTC


def test_today_is_the_copenhagen_date(national: BusinessCalendar) -> None:
    assert national.today(datetime(2026, 7, 14, 21, 59, tzinfo=UTC)) == date(2026, 7, 14)
    assert national.today(datetime(2026, 7, 14, 22, 0, tzinfo=UTC)) == date(2026, 7, 15)
    assert national.today(national.local_midnight(date(2026, 1, 15))) == date(2026, 1, 15)
