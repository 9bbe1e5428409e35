"""CONTRIBUTING.md's conformance tables name every check of the kit, with its rule, and no other.

The rule column is each check's docstring (its first paragraph): change a rule in one place and
this test names the other.  The failure table is the kit's expectation for each injected failure.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from inference_core.testing import FAILURES, BackendConformance
from inference_core.testing.expectations import EXPECTED_ERRORS

DOC = Path(__file__).resolve().parents[2] / "CONTRIBUTING.md"
ROW = re.compile(r"^\|(.+)\|(.+)\|(.+)\|\s*$")
PAIR = re.compile(r"^\|(.+)\|(.+)\|\s*$")


def conformance_section() -> str:
    text = DOC.read_text()
    start = text.index("\n### Testing your plugin: the conformance kit")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def table(header: str, pattern: re.Pattern[str]) -> list[list[str]]:
    """The rows (cells stripped) of the markdown table whose header row starts with ``header``."""
    lines = conformance_section().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        match = pattern.match(line)
        if not match:
            break
        rows.append([cell.strip() for cell in match.groups()])
    return rows


def checks() -> dict[str, str]:
    """Check name -> the first paragraph of its docstring, on one line."""
    found = {}
    for name in dir(BackendConformance):
        if name.startswith("test_"):
            doc = inspect.getdoc(getattr(BackendConformance, name)) or ""
            found[name] = " ".join(doc.split("\n\n")[0].split())
    return found


def test_every_check_is_a_row_and_every_row_a_check():
    documented = [row[1].strip("`") for row in table("| Rule |", ROW)]
    assert len(documented) == len(set(documented)), "a check is documented twice"
    assert set(documented) == set(checks()), (
        f"undocumented: {sorted(set(checks()) - set(documented))}; "
        f"not a check: {sorted(set(documented) - set(checks()))}"
    )


def test_each_rule_is_the_checks_docstring_and_says_what_a_failure_means():
    for rule, check, meaning in table("| Rule |", ROW):
        docstring = checks()[check.strip("`")]
        assert rule == docstring, (
            f"{check}: the table says\n  {rule}\nthe docstring says\n  {docstring}"
        )
        assert len(meaning) > 20, f"{check}: say what a failure means for a user"


def test_the_failure_table_is_the_kits_expectation():
    rows = table("| Failure |", PAIR)
    documented = {failure.strip("`"): must for failure, must in rows}
    assert list(documented) == list(FAILURES)
    for failure, must in documented.items():
        names = " or ".join(f"`{cls.__name__}`" for cls in EXPECTED_ERRORS[failure])
        assert must == names, f"{failure}: the table says {must}, the kit expects {names}"
