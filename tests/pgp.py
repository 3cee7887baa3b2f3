"""A partner's PGP key pair for the tests, made by Debian's gpg in a keyring of its own, with an
expiry relative to now (never a key file that would expire on a fixed date)."""
import shutil
import subprocess
import tempfile
from datetime import datetime, timedelta, timezone

import pytest

from . import clock


class Partner:
    """A key pair whose public half is pasted into a profile and whose secret half decrypts."""

    def __init__(self, expires_in_days=365, made_days_ago=0, name="Partner"):
        if clock.moved():
            # gpg (the product's as much as ours) reads the machine's real clock, which a moved test
            # clock cannot reach: a key made for the moved day is from the future for it, one made
            # for the real day has expired or not yet begun on the moved one. PGP's days are checked
            # by these tests under the real clock, with keys made relative to now.
            pytest.skip("PGP under a moved test clock: gpg keeps the real one")
        self.home = tempfile.mkdtemp(prefix="gpg-", dir="/tmp")  # short: gpg-agent's socket lives in it
        made = ["--faked-system-time", f"{datetime.now(timezone.utc) - timedelta(days=made_days_ago):%Y%m%dT%H%M%S}"] \
            if made_days_ago else []
        self.gpg("--passphrase", "", "--pinentry-mode", "loopback", *made, "--quick-gen-key",
                 f"{name} <{name.lower()}@example.com>", "future-default", "default", f"{expires_in_days}d")
        self.public_key = self.gpg("--armor", "--export").decode()
        self.fingerprint = next(line.split(":")[9] for line in self.gpg("--with-colons", "--list-keys").decode()
                                .splitlines() if line.startswith("fpr:"))

    def gpg(self, *args, input=None):
        return subprocess.run(["gpg", "--homedir", self.home, "--batch", "--yes", *args], input=input,
                              capture_output=True, check=True).stdout

    def decrypt(self, data):
        """What `gpg --decrypt` makes of the bytes, with the secret key."""
        return self.gpg("--decrypt", input=data)

    def close(self):
        subprocess.run(["gpgconf", "--homedir", self.home, "--kill", "gpg-agent"], capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)
