"""The benches' web servers, each in a process of its own (started by harness.Instance.start_web):

    python bench/serve.py exporter PORT   create_app() on waitress, exactly as `exporter run` serves it
    python bench/serve.py bare PORT       the intake bench's baseline: a bare Flask JSON endpoint

Both use the same waitress settings (exporter/cli.py web_server: threads=8, gc.freeze() once loaded),
and take their configuration from the EXPORTER_* environment the Instance gives them.
"""
import gc
import signal
import sys

from flask import Flask, jsonify, request
from waitress import create_server

THREADS = 8  # as `exporter run`


def bare_app():
    """A Flask JSON endpoint that reads the body and answers as the intake does (202, counts)."""
    app = Flask("bare")

    @app.post("/intake/events")
    def events():
        body = request.get_json()
        return jsonify(accepted=len(body["events"]) if "events" in body else 1), 202

    return app


def main(name, port):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if name == "exporter":
        from exporter import cli, create_app

        cli.web_server(create_app(), "127.0.0.1", port).run()
    else:
        gc.freeze()  # as cli.web_server does: the same server, the same collector settings
        create_server(bare_app(), host="127.0.0.1", port=port, threads=THREADS).run()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
