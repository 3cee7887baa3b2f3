"""Configuration: defaults, instance/config.py, then EXPORTER_* environment variables."""
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
