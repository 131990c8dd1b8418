"""The README states no number that its reports do not hold: a stale number is a failing test.

Unit: a paragraph or a list item of the README, code blocks and inline code left out. Every
decimal number in it must occur in a file of ``reports/`` that the unit cites (a unit that cites
none: the nearest enclosing list item that cites one, else its section, between headings), or
among the published numbers (``vaebench/paper/published.py``), or be one of the few constants of
``CONSTANTS``. Per unit, not per section: a stale number of one bullet must not pass because a
report cited by another bullet of the section happens to hold the same digits.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONSTANTS = {"3.11": "the least Python version", "0.05": "the level of the comparisons (α)"}
NUMBER = re.compile(r"(?<![\w.\-/=])\d+\.\d+(?!\w|\.\w)")  # "2.5." ends a sentence; "1.2.3" is no number
CITED = re.compile(r"reports/[\w./-]+\.(?:md|json|csv|html|log|txt)")


ITEM = re.compile(r"^(\s*)[-*] ")


def units(section: str) -> list[tuple[int | None, str]]:
    """The section's paragraphs and list items, in order: (indent of the item's marker, or None
    for a paragraph; text). A blank line or a new item ends a unit."""
    out: list[list] = []
    for line in section.splitlines():
        item = ITEM.match(line)
        if item or not line.strip():
            out.append([len(item.group(1)) if item else None, []])
        if line.strip():
            if not out:  # the section's first line: its heading
                out.append([None, []])
            out[-1][1].append(line)
    return [(indent, "\n".join(lines)) for indent, lines in out if lines]


def unsourced(readme: str, root: Path) -> dict[str, list[str]]:
    """Per section heading, the numbers that none of their unit's sources holds."""
    text = re.sub(r"```.*?```", "", readme, flags=re.S)
    published = (root / "vaebench" / "paper" / "published.py").read_text()
    out: dict[str, list[str]] = {}
    for section in re.split(r"\n(?=#+ )", text):
        cited_by_section = set(CITED.findall(section))
        items: list[tuple[int, set[str]]] = []  # the enclosing list items, outermost first
        for indent, body in units(section):
            own = set(CITED.findall(body))
            if indent is not None:
                while items and items[-1][0] >= indent:
                    items.pop()
            elif not body[:1].isspace():  # a paragraph at the margin ends the list
                items = []
            enclosing = next((c for _, c in reversed(items) if c), set())
            if indent is not None:
                items.append((indent, own))
            sources = own or enclosing or cited_by_section
            held = published + "".join((root / f).read_text() for f in sorted(sources)
                                       if (root / f).is_file())
            words = re.sub(r"`[^`\n]*`", "", body)  # inline code: names and commands
            missing = [n for n in NUMBER.findall(words) if n not in held and n not in CONSTANTS]
            if missing:
                out.setdefault(section.splitlines()[0], []).extend(missing)
    return out


@pytest.mark.parametrize("readme", ["README.md", "kernels/README.md"])
def test_every_number_of_the_readme_is_in_a_report_it_cites(readme):
    """Versions are written whole (Triton 3.4.0), which the pattern does not read as a number."""
    assert unsourced((ROOT / readme).read_text(), ROOT) == {}


def test_a_stale_or_uncited_number_is_found(tmp_path):
    (tmp_path / "reports").mkdir()
    (tmp_path / "vaebench" / "paper").mkdir(parents=True)
    (tmp_path / "vaebench" / "paper" / "published.py").write_text("NLL = 228.70\n")
    (tmp_path / "reports" / "bench.md").write_text("| compile | 3.51 |\n")
    readme = ("# Title\n\nPython >= 3.11.\n\n## Speed\n\nCompile runs 3.51× (reports/bench.md), "
              "published 228.70; 2.05× at S = 5; `lr=0.004`.\n\n```bash\nmake lr=0.002\n```\n\n"
              "## Other\n\nIt runs 3.51× faster.\n")
    assert unsourced(readme, tmp_path) == {"## Speed": ["2.05"], "## Other": ["3.51"]}


def test_a_number_must_be_in_the_report_its_own_item_cites(tmp_path):
    """A bullet's number held only by the report another bullet cites is stale; a sub-item
    that cites nothing is judged by its enclosing item's report."""
    (tmp_path / "reports").mkdir()
    (tmp_path / "vaebench" / "paper").mkdir(parents=True)
    (tmp_path / "vaebench" / "paper" / "published.py").write_text("")
    (tmp_path / "reports" / "a.md").write_text("1.25 2.50\n")
    (tmp_path / "reports" / "b.md").write_text("7.75\n")
    readme = ("## Speed\n\n- on A (reports/a.md): 1.25\n  - of which 2.50, and 7.75\n"
              "- on B (reports/b.md): 7.75, 2.50 and\n  1.25 wrapped\n\nAfter: 9.99.\n")
    assert unsourced(readme, tmp_path) == {"## Speed": ["7.75", "2.50", "1.25", "9.99"]}
