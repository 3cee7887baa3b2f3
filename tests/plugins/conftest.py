"""File servers for the FTP export type's tests, started per test on loopback."""
import pytest

from .ftp_servers import FtpServer, FtpsServer, SftpServer


@pytest.fixture
def ftp_server(tmp_path):
    root = tmp_path / "ftp"
    root.mkdir()
    server = FtpServer(root).start()
    yield server
    server.stop()


@pytest.fixture
def ftps_server(tmp_path):
    root = tmp_path / "ftps"
    root.mkdir()
    server = FtpsServer(root, tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def sftp_server(tmp_path):
    root = tmp_path / "sftp"
    root.mkdir()
    server = SftpServer(root).start()
    yield server
    server.stop()


@pytest.fixture(params=["ftp", "ftps", "sftp"])
def file_server(request):
    """Each protocol in turn."""
    return request.getfixturevalue(f"{request.param}_server")
