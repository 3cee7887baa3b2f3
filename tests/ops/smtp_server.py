"""A real SMTP server on loopback for tests (aiosmtpd): it keeps every message it accepts and
asks for a login when given a username and password (AUTH over plain SMTP: loopback only)."""
import time
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from exporter.delivery.queue import free_port


class _Keep:
    def __init__(self, server):
        self.server = server

    async def handle_DATA(self, smtp, session, envelope):
        self.server.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"


class SMTPServer:
    def __init__(self, username=None, password=None):
        self.messages = []
        self.port = free_port()
        self.logins = []
        kwargs = {}
        if username:
            kwargs = {"authenticator": self._authenticate(username, password), "auth_require_tls": False,
                      "auth_required": True}
        self.controller = Controller(_Keep(self), hostname="127.0.0.1", port=self.port, **kwargs)

    def _authenticate(self, username, password):
        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and (auth_data.login.decode(), auth_data.password.decode()) == (
                username, password)
            self.logins.append(ok)
            return AuthResult(success=ok)
        return authenticate

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        if self.controller.loop.is_running():  # a test may have stopped it already (a mail server down)
            self.controller.stop()

    def wait_for(self, count, timeout=5.0):
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.messages
