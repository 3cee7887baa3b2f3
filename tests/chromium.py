"""Which Chromium the screen tests drive, and what to say when there is none.

EXPORTER_CHROMIUM names one; else Debian's `chromium` on PATH; else a Chromium that
Playwright downloaded earlier. `make test` installs Debian's when it may (apt and root);
elsewhere the screen tests are skipped with a summary line, except in CI
(EXPORTER_REQUIRE_BROWSER=1), where a missing browser is a failure."""
import glob
import os
import shutil


def executable():
    """(found, path): path None means Playwright's own download."""
    named = os.environ.get("EXPORTER_CHROMIUM")
    if named:
        return os.access(named, os.X_OK), named
    on_path = shutil.which("chromium")
    if on_path:
        return True, on_path
    cache = os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or os.path.expanduser("~/.cache/ms-playwright")
    return bool(glob.glob(os.path.join(cache, "chromium-*", "chrome-linux*", "chrome"))), None


def required():
    return os.environ.get("EXPORTER_REQUIRE_BROWSER", "").lower() in ("1", "true", "yes")


def how_to_enable():
    """The one command that makes the screen tests run here."""
    if os.environ.get("EXPORTER_CHROMIUM"):
        return f"point EXPORTER_CHROMIUM at a Chromium binary (it names {os.environ['EXPORTER_CHROMIUM']!r}, not one)"
    if shutil.which("apt-get"):
        return "sudo apt-get install chromium"
    return ".venv/bin/python -m playwright install chromium"
