"""Benchmark reports state only what their own run measured.

Every ``bench/results/RESULTS-*.md`` names its raw records (``results/*.jsonl``); rebuilding the
report from those records with ``bench.py report`` must give the committed file, line for line,
except the "Generated ..." header line and the run's own wrk self-check output (which run.sh keeps
in the run directory, not in the records). So no sentence in a committed report comes from
anywhere but its own run: the "Findings" and "Pitfalls" once copied from ``notes-litellm.md``
(written for another run, and contradicting the report's own load table) cannot come back.

The generator itself has no way to paste prose in: ``--notes`` is gone, and a notes file lying in
the run directory is ignored.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
REPORTS = sorted((BENCH / "results").glob("RESULTS-*.md"))
WRKCHECK = re.compile(r"^## wrk self-check\n\n(.*?)\n\n(?=## )", re.S | re.M)


def report(rundir: Path, out: Path, title: str, raw_name: str, *extra: str):
    return subprocess.run(
        [sys.executable, str(BENCH / "bench.py"), "report", "--rundir", str(rundir),
         "--out", str(out), "--title", title, "--raw-name", raw_name, *extra],
        capture_output=True, text=True, timeout=120, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def rebuild(committed: Path, tmp_path: Path) -> tuple[str, str]:
    """(committed text, text rebuilt from the committed file's own raw records)."""
    text = committed.read_text()
    title = text.splitlines()[0].removeprefix("# ")
    raw = re.search(r"\(raw copy: `(results/[^`]+\.jsonl)`\)", text)
    assert raw, f"{committed.name} does not name its raw records"
    rundir = tmp_path / "run"
    rundir.mkdir()
    shutil.copy(BENCH / raw.group(1), rundir / "results.jsonl")
    check = WRKCHECK.search(text)
    if check:
        (rundir / "wrkcheck.txt").write_text(check.group(1) + "\n")
    out = tmp_path / "rebuilt.md"
    proc = report(rundir, out, title, raw.group(1))
    assert proc.returncode == 0, proc.stderr
    return text, out.read_text()


def test_there_are_reports_to_check() -> None:
    assert REPORTS, "no bench/results/RESULTS-*.md"


@pytest.mark.parametrize("committed", REPORTS, ids=lambda p: p.name)
def test_committed_report_is_exactly_its_own_runs_report(committed: Path, tmp_path: Path) -> None:
    text, rebuilt = rebuild(committed, tmp_path)
    ours, theirs = text.splitlines(), rebuilt.splitlines()
    assert ours[0] == theirs[0]  # the title
    assert ours[2].startswith("Measured ")
    assert theirs[2].startswith("Measured ")
    # "Measured <from> to <to>." comes from the records; only "Generated ..." may differ.
    assert ours[2].split(" Generated ")[0] == theirs[2].split(" Generated ")[0]
    assert ours[3:] == theirs[3:]


@pytest.mark.parametrize("committed", REPORTS, ids=lambda p: p.name)
def test_no_copied_findings_or_pitfalls(committed: Path) -> None:
    headings = re.findall(r"^##+ (.+)$", committed.read_text(), flags=re.M)
    assert not [h for h in headings if re.match(r"(Findings|Pitfalls)", h)], headings
    notes = (BENCH / "notes-litellm.md").read_text()
    # no paragraph of the anchor's notes is quoted (the link to them is fine)
    for para in (p.strip() for p in notes.split("\n\n")):
        if len(para) > 80:
            assert para not in committed.read_text(), para[:80]


def test_generator_takes_no_prose(tmp_path: Path) -> None:
    committed = REPORTS[-1]
    raw = re.search(r"\(raw copy: `(results/[^`]+\.jsonl)`\)", committed.read_text())
    assert raw
    rundir = tmp_path / "run"
    rundir.mkdir()
    shutil.copy(BENCH / raw.group(1), rundir / "results.jsonl")
    planted = "## Findings\n\nThe gateway is 1000x faster than anything (not measured here).\n"
    notes = tmp_path / "notes.md"
    notes.write_text(planted)
    (rundir / "notes.md").write_text(planted)
    out = tmp_path / "out.md"
    proc = report(rundir, out, "t", raw.group(1), "--notes", str(notes))
    assert proc.returncode == 2, proc.stderr  # no such option
    assert "--notes" in proc.stderr
    proc = report(rundir, out, "t", raw.group(1))
    assert proc.returncode == 0, proc.stderr
    assert "Findings" not in out.read_text()
    assert "1000x" not in out.read_text()
    # and run.sh feeds no notes file to the generator
    run_sh = (BENCH / "run.sh").read_text()
    assert "--notes" not in run_sh
    assert not re.search(r"cat \S*notes-", run_sh)
