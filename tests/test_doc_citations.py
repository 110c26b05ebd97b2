"""Every citation of a design document points at a document and a heading that exist.

Code comments justify themselves by citing the design documents, e.g. ``docs/method.md §6.1``,
``docs/data.md §4, §10`` or ``docs/method.md §2-§7``. A citation is only useful if a reader of a
fresh clone can follow it, so this test reads every text file of the repository that may cite
(sources, rules, tests, benchmarks, configs, docs, README) and fails on

- a ``docs/<name>.md`` that does not exist, or a cited ``§N`` / ``§N.M`` without a heading of that
  number in it (both ends of a range ``§a-§b`` are checked);
- a citation spelled another way (``docs/data.md section 9.2``, ``docs/data.md 9.2``): one form, ``§``;
- a bare ``method.md`` / ``data.md`` / ``ecosystem.md`` without the ``docs/`` prefix;
- any reference to the specification folder outside the repository (``shared/spec``).

Headings are numbered ``## 6. Title`` or ``### 6.1 Title``; the number is what a citation names.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCANNED_DIRS = ("src", "workflow", "tests", "benchmarks", "configs", "docs")
ROOT_FILES = ("config.yaml", "Snakefile", "README.md", "Makefile", "pyproject.toml")
TEXT_SUFFIXES = frozenset({".py", ".smk", ".yaml", ".yml", ".md", ".rst", ".sh", ".toml", ".txt"})
SKIPPED_DIRS = frozenset({"__pycache__", ".snakemake", ".pytest_cache"})
MAX_BYTES = 1 << 20
DESIGN_DOCUMENTS = ("method", "data", "ecosystem")

_SECTION = r"§\d+(?:\.\d+)*"
_ITEM = rf"{_SECTION}(?:[ \t]*[-–][ \t]*{_SECTION})?"
_SEPARATOR = r"[ \t]*,\s*(?:#[ \t]*)?"
CITATION = re.compile(
    rf"(?<![\w.-])docs/(?P<doc>[\w.-]+\.md)`?(?P<sections>[ \t]+{_ITEM}(?:{_SEPARATOR}{_ITEM})*)?"
)
OTHER_SPELLING = re.compile(r"(?<![\w.-])docs/[\w.-]+\.md`?[ \t]+(?:sections?[ \t]+)?\d")
BARE = re.compile(rf"(?<![\w/.-])(?:{'|'.join(DESIGN_DOCUMENTS)})\.md\b")
SPEC_FOLDER = re.compile(r"shared/spec\b")
HEADING = re.compile(r"^#{1,6}[ \t]+(\d+(?:\.\d+)*)[.\s]", re.MULTILINE)


def scanned_files() -> list[Path]:
    """The repository's text files that may carry citations (this file excluded: it holds patterns)."""
    files = [REPO / name for name in ROOT_FILES if (REPO / name).is_file()]
    for top in SCANNED_DIRS:
        for path in sorted((REPO / top).rglob("*")):
            if SKIPPED_DIRS.intersection(path.relative_to(REPO).parts) or not path.is_file():
                continue
            if path.suffix in TEXT_SUFFIXES and path.stat().st_size <= MAX_BYTES:
                files.append(path)
    return [p for p in files if p.resolve() != Path(__file__).resolve()]


@functools.cache
def heading_numbers(document: Path) -> frozenset[str]:
    """Section numbers of a markdown document's headings ('6', '6.1', ...)."""
    return frozenset(HEADING.findall(document.read_text(encoding="utf-8")))


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def citation_problems(text: str, where: str, docs_root: Path = REPO) -> list[str]:
    """One message per broken, misspelt or bare citation in ``text`` (``where`` names the file)."""
    problems = []
    for match in CITATION.finditer(text):
        doc = docs_root / "docs" / match["doc"]
        at = f"{where}:{_line(text, match.start())}"
        if not doc.is_file():
            problems.append(f"{at}: cites docs/{match['doc']}, which does not exist")
            continue
        numbers = heading_numbers(doc)
        for section in re.findall(r"§(\d+(?:\.\d+)*)", match["sections"] or ""):
            if section not in numbers:
                problems.append(f"{at}: docs/{match['doc']} has no heading numbered {section}")
    for regex, problem in (
        (OTHER_SPELLING, "write sections as §N (e.g. 'docs/data.md §9.2')"),
        (BARE, "cite design documents by their repository path, docs/<name>.md"),
        (SPEC_FOLDER, "refers to the specification folder outside the repository; cite docs/"),
    ):
        for match in regex.finditer(text):
            problems.append(f"{where}:{_line(text, match.start())}: {match.group(0)!r}: {problem}")
    return problems


def test_every_citation_names_an_existing_document_and_heading():
    problems = []
    for path in scanned_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        problems += citation_problems(text, str(path.relative_to(REPO)))
    assert not problems, "broken design-document citations:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", DESIGN_DOCUMENTS)
def test_design_documents_number_each_section_once(name):
    text = (REPO / "docs" / f"{name}.md").read_text(encoding="utf-8")
    numbers = HEADING.findall(text)
    assert numbers, f"docs/{name}.md has no numbered headings"
    repeated = sorted({n for n in numbers if numbers.count(n) > 1})
    assert not repeated, f"docs/{name}.md numbers several headings {repeated}: citations are ambiguous"


def test_checker_reports_each_kind_of_bad_citation():
    method = "docs/" + "method.md"
    text = "\n".join(
        [
            f"fine ({method} §6.1, §14 and {method} §2-§3; `docs/" + "data.md` §9.2)",
            f"continued ({method} §4,\n    §7)",
            f"missing section ({method} §6.9)",
            f"range end missing ({method} §1-§99)",
            "no document (docs/" + "nosuch.md §1)",
            "old spelling (docs/" + "data.md section 9.2)",
            "bare (" + "ecosystem.md §9)",
            "outside (/work/" + "shared/spec/method.md)",
        ]
    )
    problems = citation_problems(text, "sample.py")
    assert [p.split(":")[1] for p in problems] == ["4", "5", "6", "7", "8", "9"], problems
    assert "no heading numbered 6.9" in problems[0]
    assert "no heading numbered 99" in problems[1]
    assert "does not exist" in problems[2]
    assert "§N" in problems[3] and "repository path" in problems[4] and "outside" in problems[5]
