"""Configuration: defaults, instance/config.py, then EXPORTER_* environment variables."""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from exporter import config, create_app, security


def test_env_values_are_json_decoded_and_test_variables_ignored():
    env = {"EXPORTER_MINUTE_SECONDS": "5", "EXPORTER_ALLOW_PRIVATE_TARGETS": "true",
           "EXPORTER_DATABASE_URL": "postgresql://u@h/db", "EXPORTER_TEST_REDIS_URL": "redis://x", "HOME": "/root"}
    assert config.from_env(env) == {"MINUTE_SECONDS": 5, "ALLOW_PRIVATE_TARGETS": True,
                                    "DATABASE_URL": "postgresql://u@h/db"}


@pytest.mark.parametrize("raw", ["123456789", "true", "null", '"quoted"', "[1, 2]", "1e3"])
def test_secret_key_and_urls_stay_strings_whatever_they_look_like(raw):
    env = {"EXPORTER_SECRET_KEY": raw, "EXPORTER_DATABASE_URL": raw, "EXPORTER_REDIS_URL": raw}
    assert config.from_env(env) == {"SECRET_KEY": raw, "DATABASE_URL": raw, "REDIS_URL": raw}


def test_a_numeric_secret_key_encrypts_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPORTER_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("EXPORTER_SECRET_KEY", "123456789")
    key = create_app().config["SECRET_KEY"]
    assert security.decrypt(key, security.encrypt(key, "hunter22")) == "hunter22"
    assert key == "123456789" and not (tmp_path / "secret_key").exists()


def test_instance_config_then_env_win_over_defaults(tmp_path, monkeypatch):
    (tmp_path / "config.py").write_text("RETRY_BASE_SECONDS = 10\nHOST_CONCURRENCY = 2\n")
    monkeypatch.setenv("EXPORTER_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("EXPORTER_HOST_CONCURRENCY", "3")
    app = create_app()
    assert app.config["RETRY_BASE_SECONDS"] == 10
    assert app.config["HOST_CONCURRENCY"] == 3
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path}/exporter.sqlite"
    # A secret key is made once and kept in the instance folder.
    assert (tmp_path / "secret_key").read_text().strip() == app.config["SECRET_KEY"]
    assert create_app().config["SECRET_KEY"] == app.config["SECRET_KEY"]


def test_postgres_urls_use_psycopg(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPORTER_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("EXPORTER_DATABASE_URL", "postgres://u@h/db")
    assert create_app().config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/db"


# --- the instance's files are the user's alone (issue 21, point 6) -------------------------------

def mode(path):
    return os.stat(path).st_mode & 0o777


@pytest.fixture
def shared_umask():
    """The usual umask (022) before Exporter starts, restored after the test."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def open_folder():
    """A folder every local user may walk through (as /srv/exporter would be), not pytest's 0700 one."""
    path = tempfile.mkdtemp(prefix="exporter-instance-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_instance_folder_the_database_its_wal_shm_and_writer_lock_are_private(open_folder, shared_umask,
                                                                                  monkeypatch):
    from flask_migrate import upgrade

    from exporter import extensions
    from exporter.intake import tokens

    instance = os.path.join(open_folder, "instance")
    monkeypatch.setenv("EXPORTER_INSTANCE_PATH", instance)
    app = create_app({"SECRET_KEY": "test", "TESTING": True})
    assert os.umask(0o077) == 0o077
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        with extensions.writing():
            tokens.create("crm")  # a write: the WAL and SHM exist while the connection is open
            database = os.path.join(instance, "exporter.sqlite")
            files = [database, database + "-wal", database + "-shm", database + ".writer"]
            assert {path: mode(path) for path in files} == {path: 0o600 for path in files}
            assert mode(instance) == 0o700
            _another_user_cannot_take_the_writer_lock(database + ".writer")
        extensions.db.engine.dispose()


def _another_user_cannot_take_the_writer_lock(path):
    """Before, any local user could open the lock read-only and flock it, stalling every intake POST."""
    if os.geteuid() != 0:
        return  # only root can become another user here; the modes above say the same
    script = ("import fcntl, sys\ntry:\n    f = open(sys.argv[1])\nexcept PermissionError:\n    sys.exit(3)\n"
              "fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n")
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable  # one that user may run
    done = subprocess.run([python, "-c", script, path], user=65534, group=65534, timeout=30,
                          capture_output=True)
    assert done.returncode == 3, done.stderr  # 1 (BlockingIOError): it could open it, and tried the lock


def test_an_older_instance_made_readable_by_all_is_made_private_at_start(open_folder, shared_umask, monkeypatch):
    instance = os.path.join(open_folder, "instance")
    os.mkdir(instance, 0o755)
    database = os.path.join(instance, "exporter.sqlite")
    for suffix in ("", "-wal", "-shm", ".writer"):
        with open(database + suffix, "w"):
            pass
        os.chmod(database + suffix, 0o644)
    monkeypatch.setenv("EXPORTER_INSTANCE_PATH", instance)
    create_app({"SECRET_KEY": "test", "TESTING": True})
    assert mode(instance) == 0o700
    assert [mode(database + suffix) for suffix in ("", "-wal", "-shm", ".writer")] == [0o600] * 4


def test_every_command_starts_with_umask_077(open_folder):
    """`exporter run` starts its worker and cron as `python -m exporter worker|cron`: every command
    goes through the same start, whatever umask it was given."""
    instance = os.path.join(open_folder, "instance")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTER_")}
    env["EXPORTER_INSTANCE_PATH"] = instance
    done = subprocess.run([sys.executable, "-m", "exporter", "migrate"], env=env, capture_output=True, text=True,
                          timeout=120, preexec_fn=lambda: os.umask(0o022))
    assert done.returncode == 0, done.stderr
    assert mode(instance) == 0o700
    assert mode(os.path.join(instance, "exporter.sqlite")) == 0o600
    assert mode(os.path.join(instance, "secret_key")) == 0o600
