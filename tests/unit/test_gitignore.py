"""`.gitignore` describes only what the build leaves behind: no tracked file matches it, or
a newcomer's `git add` would behave differently from what the tree shows."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_no_tracked_file_is_ignored() -> None:
    listed = subprocess.run(["git", "ls-files", "-ci", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=True)
    assert listed.stdout.splitlines() == []
