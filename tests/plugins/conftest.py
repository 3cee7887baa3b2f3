"""File servers for the FTP export type's tests, started per test on loopback."""
import pytest

from .ftp_servers import FtpServer, FtpsServer, SftpServer


def _serve(tmp_path, name, make):
    root = tmp_path / name
    root.mkdir()
    server = make(root).start()
    yield server
    server.stop()


@pytest.fixture
def ftp_server(tmp_path):
    yield from _serve(tmp_path, "ftp", FtpServer)


@pytest.fixture
def ftps_server(tmp_path):
    yield from _serve(tmp_path, "ftps", lambda root: FtpsServer(root, tmp_path))


@pytest.fixture
def sftp_server(tmp_path):
    yield from _serve(tmp_path, "sftp", SftpServer)


@pytest.fixture(params=["ftp", "ftps", "sftp"])
def file_server(request):
    """Each protocol in turn."""
    return request.getfixturevalue(f"{request.param}_server")
