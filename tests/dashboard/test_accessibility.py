"""The dashboard's stylesheet keeps text readable: every colour pair it sets passes WCAG AA (4.5:1).

Each rule of dashboard.css that sets both ``color`` and ``background`` is checked, and plain text
colours against the page's white; a condition badge that lost its symbol or word would fail the
template test below.
"""

from __future__ import annotations

import re
from pathlib import Path

import haven.dashboard

CSS = Path(haven.dashboard.__file__).parent / "static" / "dashboard.css"
PAGE = "#ffffff"
AA = 4.5


def luminance(hex_colour: str) -> float:
    h = hex_colour.lstrip("#")
    channels = [int(h[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def pairs() -> list[tuple[str, str, str]]:
    found = []
    css = re.sub(r"/\*.*?\*/", "", CSS.read_text(), flags=re.S)
    variables = dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})", css))
    for selector, body in re.findall(r"([^{}]+)\{([^}]*)\}", css):
        body = re.sub(r"var\(--([\w-]+)\)", lambda m: variables.get(m.group(1), m.group(0)), body)
        fg = re.search(r"(?<![-\w])color:\s*(#[0-9a-fA-F]{6})", body)
        bg = re.search(r"background:\s*(#[0-9a-fA-F]{6})", body)
        if fg:
            found.append((selector.strip(), fg.group(1), bg.group(1) if bg else PAGE))
    return found


def test_every_text_colour_has_aa_contrast() -> None:
    checked = pairs()
    assert len(checked) >= 10  # the condition badges, the buttons, the muted text...
    poor = [(s, fg, bg, round(contrast(fg, bg), 2)) for s, fg, bg in checked if contrast(fg, bg) < AA]
    assert not poor


def test_the_checker_sees_poor_contrast() -> None:
    assert contrast("#777777", "#ffffff") < AA < contrast("#1a1a1a", "#ffffff")


def test_each_condition_has_a_word_and_a_symbol() -> None:
    from haven.dashboard.app import SYMBOLS
    from haven.dashboard.board import CONDITIONS

    parts = (CSS.parent.parent / "templates" / "parts.html").read_text()
    assert set(CONDITIONS) <= set(SYMBOLS)
    assert 'condition.replace("_", " ")' in parts  # the word, next to the symbol
    css = CSS.read_text()
    for condition in CONDITIONS:
        assert f".c-{condition} " in css


def test_each_replica_health_canary_outcome_and_backup_condition_has_a_symbol_and_a_colour() -> None:
    from haven.canary.model import Outcome, RunState
    from haven.dashboard.app import SYMBOLS
    from haven.domain.controlplane import ReplicaHealth

    words = [*ReplicaHealth, *Outcome, *RunState, "within_policy", "stale", "none_yet"]
    css = CSS.read_text()
    for word in words:
        if word == RunState.DONE:
            continue  # a finished boot shows its outcome
        assert word in SYMBOLS, word
        assert re.search(rf"\.c-{word}[ ,]", css), word
