"""Test-only TLS: a throwaway CA, a server certificate for localhost, and a
tiny threaded HTTPS server with mutable routes.

    ca = make_ca(tmp_path)                  # ca.pem, server.pem, server-key.pem
    base_url, stop = serve_https({"/x": (200, b"{}", "application/json")}, ca)
    ...
    stop()

Clients trust the CA through SSL_CERT_FILE=ca.pem (OpenSSL, rustls-native-certs)
or ssl.create_default_context(cafile=ca.ca_pem).
"""
import datetime
import ipaddress
import os
import socket
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class TestCA:
    __test__ = False  # not a pytest test class, despite the name

    ca_pem: str    # path of the CA certificate (PEM)
    cert_pem: str  # path of the server certificate (PEM), signed by the CA
    key_pem: str   # path of the server's private key (PEM, unencrypted)

    def ssl_context(self):
        """A server-side context presenting the server certificate."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_pem, self.key_pem)
        return ctx

    def client_context(self):
        """A client-side context that trusts this CA only."""
        return ssl.create_default_context(cafile=self.ca_pem)


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def make_ca(directory, common_name="pg_stepup test CA"):
    """Writes ca.pem, server.pem and server-key.pem into `directory`: a CA and
    a server certificate it signed for DNS localhost, IP 127.0.0.1 and ::1,
    both valid from an hour ago (clock skew) for one day."""
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    return TestCA(
        ca_pem=_write(os.path.join(directory, "ca.pem"), ca_cert.public_bytes(pem)),
        cert_pem=_write(os.path.join(directory, "server.pem"), cert.public_bytes(pem)),
        key_pem=_write(os.path.join(directory, "server-key.pem"), key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())),
    )


class Routes(dict):
    """{path: (status, body_bytes, content_type)}; also records the paths
    requested (`requests`), in order, for tests that check what was fetched."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.requests = []


def serve_https(directory_or_routes, ca, host="127.0.0.1"):
    """Serves `directory_or_routes` over HTTPS with `ca`'s server certificate
    on `host`:<free port>, in a daemon thread; returns (base_url, stop).

    Routes: {path: (status, body_bytes, content_type)} or, with extra
    response headers (a Location, say), (status, body, content_type,
    {name: value}); looked up by the
    request path without its query; the dict is read on every request, so a
    test may change it while the server runs. A path not in it is 404. A
    directory (str or PathLike) serves its files (GET only, no listing).
    `stop()` shuts the server down and closes its socket; calling it twice
    is harmless. `base_url` has no trailing slash; for ::1 it is bracketed."""
    routes = directory_or_routes
    if not isinstance(routes, dict):
        root = os.path.realpath(os.fspath(routes))
        routes = _DirectoryRoutes(root)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if isinstance(routes, Routes):
                routes.requests.append(path)
            entry = routes.get(path)
            if entry is None:
                entry = (404, b"not found\n", "text/plain")
            status, body, content_type, *rest = entry
            headers = rest[0] if rest else {}
            if isinstance(body, str):
                body = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # a client that stops reading a large body

        def log_message(self, fmt, *args):
            pass  # quiet: pytest shows stderr of failing tests

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        def handle_error(self, request, client_address):
            pass  # TLS handshakes refused by the client under test are expected

    httpd = Server((host, 0), Handler)
    httpd.socket = ca.ssl_context().wrap_socket(httpd.socket, server_side=True,
                                                do_handshake_on_connect=False)
    port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, name=f"https-{port}", daemon=True)
    thread.start()

    stopped = threading.Event()

    def stop():
        if stopped.is_set():
            return
        stopped.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)

    netloc = f"[{host}]" if ":" in host else host
    return f"https://{netloc}:{port}", stop


class _DirectoryRoutes:
    """Routes backed by the files of a directory (no traversal out of it)."""

    def __init__(self, root):
        self.root = root

    def get(self, path):
        full = os.path.realpath(os.path.join(self.root, path.lstrip("/")))
        if not full.startswith(self.root + os.sep) or not os.path.isfile(full):
            return None
        with open(full, "rb") as f:
            body = f.read()
        kind = "application/json" if full.endswith(".json") else "application/octet-stream"
        return (200, body, kind)
