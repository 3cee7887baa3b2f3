"""Exporter: export CRM order events to third parties."""
import os

from flask import Flask

from . import config as config_module


def create_app(test_config=None, web=True):
    """The app factory: config, extensions, blueprints, CLI, export types.

    web=False: no blueprints (pages, forms, the limiter, /metrics), for a command that serves no
    request and wants to load only what it uses (`exporter files send`)."""
    # EXPORTER_INSTANCE_PATH moves config, SQLite file and secret key out of ./instance.
    os.umask(config_module.PRIVATE_UMASK)  # before anything is created: the instance folder too
    app = Flask(__name__, instance_relative_config=True, instance_path=os.environ.get("EXPORTER_INSTANCE_PATH"))
    os.makedirs(app.instance_path, mode=0o700, exist_ok=True)
    app.config.from_object(config_module.Defaults)
    app.config.from_pyfile("config.py", silent=True)
    if test_config is None:
        app.config.update(config_module.from_env())
    else:
        app.config.update(test_config)
    _finish_config(app)

    from .extensions import csrf, db, login_manager, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(__file__), "migrations"), render_as_batch=True)
    csrf.init_app(app)
    login_manager.init_app(app)

    from . import export_types

    app.extensions["export_types"] = export_types.discover()
    # The drain sends a day's file through the files part, which sits above delivery.
    from .files import daily_files

    app.extensions["daily_files"] = daily_files

    if web:
        from .web import register_blueprints

        register_blueprints(app)

    from . import cli

    cli.init_app(app)
    return app


def _sqlite_path(url):
    """The file of a SQLite database URL, or None (another database, or one in memory)."""
    from sqlalchemy.engine import make_url

    database = make_url(url).database if url.startswith("sqlite") else None
    return database if database and database != ":memory:" and not database.startswith("file:") else None


def _finish_config(app):
    cfg = app.config
    if not cfg.get("SECRET_KEY"):
        cfg["SECRET_KEY"] = config_module.instance_secret_key(app.instance_path)
    url = cfg.get("DATABASE_URL") or "sqlite:///" + os.path.join(app.instance_path, "exporter.sqlite")
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    cfg["SQLALCHEMY_DATABASE_URI"] = url
    config_module.make_private(app.instance_path, _sqlite_path(url))
    cfg["FILES_DIR"] = cfg.get("FILES_DIR") or os.path.join(app.instance_path, "files")
