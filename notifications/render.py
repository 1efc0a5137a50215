"""Rendering messages from the Jinja2 templates in notifications/templates/<locale>/<kind>.txt.j2.

Each kind's template has blocks: `subject` and `summary` (about the trial, not the reader, so a
Teams card can use them too), `greeting`, `body`, `link_label`, `signoff` and `footer`. The plain
text is the whole template; the HTML alternative is `layout.html.j2` (autoescaped) filled with the
same blocks, so the two versions can never say different things.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, pass_context
from jinja2.runtime import Context

from schemas.duration import Duration, DurationUnit
from schemas.notifications import LOCALES

TEMPLATES = Path(__file__).parent / "templates"
COPENHAGEN = ZoneInfo("Europe/Copenhagen")

_DA_WEEKDAYS = ("mandag", "tirsdag", "onsdag", "torsdag", "fredag", "lørdag", "søndag")
_DA_MONTHS = (
    "januar",
    "februar",
    "marts",
    "april",
    "maj",
    "juni",
    "juli",
    "august",
    "september",
    "oktober",
    "november",
    "december",
)
_DA_UNITS = {
    DurationUnit.SECONDS: ("sekund", "sekunder"),
    DurationUnit.MINUTES: ("minut", "minutter"),
    DurationUnit.HOURS: ("time", "timer"),
    DurationUnit.DAYS: ("dag", "dage"),
    DurationUnit.WEEKS: ("uge", "uger"),
    DurationUnit.WORKING_DAYS: ("arbejdsdag", "arbejdsdage"),
}


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    summary: str
    text: str
    html: str


def _instant(value: Any) -> datetime | date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime | date):
        return value
    text = str(value)
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return date.fromisoformat(text)


def format_when(value: Any, locale: str, *, with_time: bool = True) -> str:
    """'tirsdag den 13. januar 2026 kl. 09.30' / 'Tuesday 13 January 2026 at 09:30' (Copenhagen)."""
    instant = _instant(value)
    if instant is None:
        return ""
    show_time = with_time and isinstance(instant, datetime)
    if isinstance(instant, datetime):
        local = instant.astimezone(COPENHAGEN) if instant.tzinfo else instant
        day: date = local.date()
    else:
        local = None
        day = instant
    if locale == "da":
        month = _DA_MONTHS[day.month - 1]
        text = f"{_DA_WEEKDAYS[day.weekday()]} den {day.day}. {month} {day.year}"
        if show_time and local is not None:
            text += f" kl. {local:%H.%M}"
        return text
    text = f"{day:%A} {day.day} {day:%B %Y}"
    if show_time and local is not None:
        text += f" at {local:%H:%M}"
    return text


def format_duration(value: Any, locale: str) -> str:
    if value is None or value == "":
        return ""
    duration = value if isinstance(value, Duration) else Duration.model_validate(str(value))
    if locale != "da":
        return str(duration)
    one, many = _DA_UNITS[duration.unit]
    return f"{duration.amount} {one if duration.amount == 1 else many}"


def join_names(names: Any, locale: str) -> str:
    """'A, B og C' / 'A, B and C'."""
    items = [str(n) for n in names or [] if n]
    if len(items) <= 1:
        return "".join(items)
    word = "og" if locale == "da" else "and"
    return f"{', '.join(items[:-1])} {word} {items[-1]}"


@pass_context
def _when(ctx: Context, value: Any) -> str:
    return format_when(value, ctx["locale"])


@pass_context
def _day(ctx: Context, value: Any) -> str:
    return format_when(value, ctx["locale"], with_time=False)


@pass_context
def _duration(ctx: Context, value: Any) -> str:
    return format_duration(value, ctx["locale"])


@pass_context
def _names(ctx: Context, value: Any) -> str:
    return join_names(value, ctx["locale"])


def _paragraphs(text: str) -> list[dict[str, list[str]]]:
    """Blank-line separated paragraphs; one whose lines all start with '- ' becomes a list."""
    result: list[dict[str, list[str]]] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [line.rstrip() for line in block.strip().splitlines() if line.strip()]
        if not lines:
            continue
        if all(line.lstrip().startswith("- ") for line in lines):
            result.append({"items": [line.lstrip()[2:] for line in lines], "lines": []})
        else:
            result.append({"items": [], "lines": lines})
    return result


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())


class Renderer:
    """Renders a kind of message in a locale; templates are loaded once and cached by Jinja."""

    def __init__(self, folder: Path = TEMPLATES) -> None:
        self.folder = folder
        self.env = Environment(
            loader=FileSystemLoader(folder),
            autoescape=lambda name: bool(name and name.endswith(".html.j2")),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters.update(when=_when, day=_day, duration=_duration, names=_names)

    @staticmethod
    def template_name(kind: str, locale: str) -> str:
        return f"{locale}/{kind}.txt.j2"

    def has_template(self, kind: str, locale: str) -> bool:
        return (self.folder / self.template_name(kind, locale)).is_file()

    def _template(self, kind: str, locale: str) -> Template:
        return self.env.get_template(self.template_name(kind, locale))

    def _block_context(self, kind: str, locale: str, values: Mapping[str, Any]) -> Context:
        """A context holding the kind's blocks and, behind them, those of `<locale>/base.txt.j2`,
        as Jinja stacks them when it renders the whole template."""
        template = self._template(kind, locale)
        ctx = template.new_context({**values, "locale": locale})
        base = self.env.get_template(f"{locale}/base.txt.j2")
        for name, block in base.blocks.items():
            ctx.blocks.setdefault(name, []).append(block)
        return ctx

    def block(self, kind: str, locale: str, name: str, context: Mapping[str, Any]) -> str:
        ctx = self._block_context(kind, locale, context)
        return "".join(ctx.blocks[name][0](ctx))

    def headline(self, kind: str, locale: str, context: Mapping[str, Any]) -> tuple[str, str]:
        """(subject, summary): about the trial, not the reader; what a Teams card shows."""
        subject = _one_line(self.block(kind, locale, "subject", context))
        summary = _one_line(self.block(kind, locale, "summary", context))
        return subject, summary

    def render(self, kind: str, locale: str, context: Mapping[str, Any]) -> RenderedMessage:
        locale = locale if locale in LOCALES else "da"
        values = {**context, "locale": locale}
        text = _tidy(self._template(kind, locale).render(values))

        def part(name: str) -> str:
            return _tidy(self.block(kind, locale, name, values))

        subject, summary = self.headline(kind, locale, values)
        html = self.env.get_template("layout.html.j2").render(
            locale=locale,
            subject=subject,
            paragraphs=_paragraphs("\n\n".join([part("greeting"), part("summary"), part("body")])),
            link=values["link"],
            link_label=_one_line(part("link_label")),
            signoff=part("signoff").strip().splitlines(),
            footer=_one_line(part("footer")),
        )
        return RenderedMessage(subject=subject, summary=summary, text=text, html=html)
