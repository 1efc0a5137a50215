"""Every setting an operator can give is in the README's settings table."""

from __future__ import annotations

import re
from pathlib import Path

from workers.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    table = text[text.index("## Settings") : text.index("## Tests")]
    documented = set(re.findall(r"`(PROVE_[A-Z0-9_]+)`", table))
    expected = {f"PROVE_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set(), "settings missing from the README"
    assert documented - expected == set(), "README names settings that do not exist"
