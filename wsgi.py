"""The WSGI entry point: gunicorn wsgi:app (or waitress-serve --call exporter:create_app)."""
from exporter import create_app

app = create_app()
