"""The Python client over HTTPS to a real roset-mount (``--tls-cert/--tls-key``),
with a throwaway CA made by the ``openssl`` CLI: ``ROSET_CA_FILE`` (or
``ca_file=``) makes it trust the daemon; an unrelated CA, a certificate that does
not name the host, or a server without TLS raise a clear ``TLS_ERROR`` at once,
never retried.
"""
import shutil
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import roset
from roset.exceptions import RosetConnectionError, RosetError

from conftest import _is_mounted, need, start_daemon

pytestmark = pytest.mark.daemon


def _openssl(cwd: Path, *args: str) -> None:
    proc = subprocess.run(["openssl", *args], cwd=str(cwd), capture_output=True, text=True)
    assert proc.returncode == 0, f"openssl {' '.join(args)}:\n{proc.stderr}"


def _make_ca(cwd: Path, name: str, cn: str) -> None:
    _openssl(cwd, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={cn}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate it signs (127.0.0.1 and localhost), and an unrelated CA."""
    need(shutil.which("openssl") is not None, "openssl is not installed (apt-get install openssl)")
    d = tmp_path_factory.mktemp("roset-py-pki-")
    _make_ca(d, "ca", "Roset Test CA")
    _make_ca(d, "other-ca", "Unrelated Test CA")
    _openssl(d, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (d / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(d, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "2", "-extfile", "server.ext")
    return {k: str(d / f) for k, f in (("ca", "ca.crt"), ("other_ca", "other-ca.crt"), ("cert", "server.crt"), ("key", "server.key"))}


@pytest.fixture(scope="module")
def https_daemon(tmp_path_factory, pki):
    """A roset-mount serving HTTPS on every address (so 127.0.0.2 reaches it too)."""
    d = start_daemon(
        tmp_path_factory.mktemp("roset-py-tls-"),
        extra=["--listen", "0.0.0.0:0", "--tls-cert", pki["cert"], "--tls-key", pki["key"]],
        ca_file=pki["ca"],
    )
    try:
        yield d
    finally:
        d.stop()
        if d.proc.returncode not in (0, None, -signal.SIGTERM):
            sys.stderr.write(f"roset-mount exited with {d.proc.returncode}; log tail:\n{d.log_tail()}\n")
        assert not _is_mounted(d.mountpoint), f"{d.mountpoint} is still mounted after teardown"


def _no_sleep(client):
    """Records the backoff waits instead of sleeping: a retry would show here."""
    waits = []
    client._sleep = waits.append
    return waits


def _tls_error(call) -> RosetConnectionError:
    with pytest.raises(RosetError) as info:
        call()
    err = info.value
    assert isinstance(err, RosetConnectionError), repr(err)
    assert err.code == "TLS_ERROR", str(err)
    return err


def test_https_with_roset_ca_file(https_daemon, pki, monkeypatch):
    assert https_daemon.endpoint.startswith("https://127.0.0.1:")
    monkeypatch.setenv("ROSET_CA_FILE", pki["ca"])
    client = roset.Client(api_url=https_daemon.endpoint, api_key=https_daemon.api_key)
    assert client.ca_file == pki["ca"]
    assert client.health()["status"] == "ok"
    assert [m.name for m in client.list_mounts()] == ["default"]
    node = client.create_folder("/tls-check", "over-https")
    assert client.get_node(node.id).path == "/tls-check/over-https"
    # By name: the certificate holds localhost too.
    port = urlsplit(https_daemon.endpoint).port
    assert roset.Client(api_url=f"https://localhost:{port}", api_key=https_daemon.api_key).health()["status"] == "ok"


def test_explicit_ca_file_beats_the_environment(https_daemon, pki, monkeypatch):
    monkeypatch.setenv("ROSET_CA_FILE", pki["other_ca"])
    good = roset.Client(api_url=https_daemon.endpoint, api_key=https_daemon.api_key, ca_file=pki["ca"])
    assert good.health()["status"] == "ok"
    monkeypatch.setenv("ROSET_CA_FILE", pki["ca"])
    bad = roset.Client(api_url=https_daemon.endpoint, api_key=https_daemon.api_key, ca_file=pki["other_ca"])
    _tls_error(bad.health)


def test_another_ca_fails_clearly_and_is_not_retried(https_daemon, pki, monkeypatch):
    monkeypatch.setenv("ROSET_CA_FILE", pki["other_ca"])
    client = roset.Client(api_url=https_daemon.endpoint, api_key=https_daemon.api_key, max_retries=5)
    waits = _no_sleep(client)
    err = _tls_error(client.list_mounts)
    assert waits == []
    text = str(err)
    assert https_daemon.endpoint in text
    assert "certificate signed by an unknown authority" in text
    assert f"the CA in {pki['other_ca']} did not sign it" in text
    assert https_daemon.api_key not in text
    # The system's CAs do not know it either; the message says what to do.
    monkeypatch.delenv("ROSET_CA_FILE")
    plain = roset.Client(api_url=https_daemon.endpoint, api_key=https_daemon.api_key, max_retries=5)
    waits = _no_sleep(plain)
    err = _tls_error(lambda: plain.commit("node_x"))
    assert waits == []
    assert "pass ca_file= or set ROSET_CA_FILE" in str(err)


def test_a_host_the_certificate_does_not_name(https_daemon, pki):
    port = urlsplit(https_daemon.endpoint).port
    url = f"https://127.0.0.2:{port}"
    client = roset.Client(api_url=url, api_key=https_daemon.api_key, ca_file=pki["ca"], max_retries=3)
    waits = _no_sleep(client)
    err = _tls_error(client.health)
    assert waits == []
    assert url in str(err)
    assert "does not name 127.0.0.2" in str(err)


def test_a_missing_ca_file(https_daemon, tmp_path):
    client = roset.Client(api_url=https_daemon.endpoint, api_key=https_daemon.api_key, ca_file=str(tmp_path / "nope.crt"))
    err = _tls_error(client.health)
    assert "cannot read the CA file" in str(err)
    assert "nope.crt" in str(err)


def test_an_https_url_to_a_server_without_tls(pki):
    class Plain(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Plain)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}"
        client = roset.Client(api_url=url, api_key="rsk_x", ca_file=pki["ca"], max_retries=3)
        waits = _no_sleep(client)
        err = _tls_error(client.health)
        assert waits == []
        assert url in str(err) and "without TLS" in str(err)
    finally:
        server.shutdown()
        server.server_close()


def test_a_client_with_a_ca_file_still_pickles():
    """Ray ships the client to its workers."""
    import pickle

    c = roset.Client(api_url="https://127.0.0.1:1", api_key="rsk_x", ca_file="/nonexistent.crt")
    assert pickle.loads(pickle.dumps(c)).ca_file == "/nonexistent.crt"
