"""The README states no number that its reports do not hold: a stale number is a failing test.

Unit: a section of the README (between headings), code blocks and inline code left out. Every decimal number
in it must occur in a file of ``reports/`` that the section cites, or among the published
numbers (``vaebench/paper/published.py``), or be one of the few constants of ``CONSTANTS``.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTANTS = {"3.11": "the least Python version", "0.05": "the level of the comparisons (α)"}
NUMBER = re.compile(r"(?<![\w.\-/=])\d+\.\d+(?![\w.])")
CITED = re.compile(r"reports/[\w./-]+\.(?:md|json|csv|html|log|txt)")


def unsourced(readme: str, root: Path) -> dict[str, list[str]]:
    """Per section heading, the numbers that none of its sources holds."""
    text = re.sub(r"```.*?```", "", readme, flags=re.S)
    prose = re.sub(r"`[^`\n]*`", "", text)  # inline code: names and commands, not claims
    published = (root / "vaebench" / "paper" / "published.py").read_text()
    out = {}
    for section, words in zip(re.split(r"\n(?=#+ )", text), re.split(r"\n(?=#+ )", prose),
                              strict=True):
        sources = [root / f for f in sorted(set(CITED.findall(section)))]
        held = published + "".join(f.read_text() for f in sources if f.is_file())
        missing = [n for n in NUMBER.findall(words) if n not in held and n not in CONSTANTS]
        if missing:
            out[section.splitlines()[0]] = missing
    return out


def test_every_number_of_the_readme_is_in_a_report_it_cites():
    assert unsourced((ROOT / "README.md").read_text(), ROOT) == {}


def test_a_stale_or_uncited_number_is_found(tmp_path):
    (tmp_path / "reports").mkdir()
    (tmp_path / "vaebench" / "paper").mkdir(parents=True)
    (tmp_path / "vaebench" / "paper" / "published.py").write_text("NLL = 228.70\n")
    (tmp_path / "reports" / "bench.md").write_text("| compile | 3.51 |\n")
    readme = ("# Title\n\nPython >= 3.11.\n\n## Speed\n\nCompile runs 3.51× (reports/bench.md), "
              "published 228.70; 2.05× at S = 5; `lr=0.004`.\n\n```bash\nmake lr=0.002\n```\n\n"
              "## Other\n\nIt runs 3.51× faster.\n")
    assert unsourced(readme, tmp_path) == {"## Speed": ["2.05"], "## Other": ["3.51"]}
