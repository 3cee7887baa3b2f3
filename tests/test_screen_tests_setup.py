"""`make test` without Chromium: every other test runs, the screen tests are skipped, and the
last line says how many and the one command that enables them. CI (EXPORTER_REQUIRE_BROWSER=1)
fails instead of skipping."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_pytest(**env):
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/e2e/test_login.py", "tests/test_config.py"],
        cwd=ROOT, env={**os.environ, "EXPORTER_CHROMIUM": "/nonexistent/chromium", **env},
        capture_output=True, text=True, timeout=300)


def test_without_chromium_the_screen_tests_are_skipped_and_the_last_line_says_how_to_run_them():
    result = run_pytest(EXPORTER_REQUIRE_BROWSER="")
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed, 1 skipped" in lines[-2]
    assert lines[-1].startswith("1 screen tests did not run (no Chromium found). To run them: ")
    assert "EXPORTER_CHROMIUM" in lines[-1]


def test_ci_fails_when_chromium_is_missing():
    result = run_pytest(EXPORTER_REQUIRE_BROWSER="1")
    assert result.returncode != 0
    assert "EXPORTER_REQUIRE_BROWSER is set but no Chromium was found" in result.stdout + result.stderr
