"""Notifications against hostile settings and hostile log text: Markdown escaped, the SMTP
server's certificate verified, the password's variable confined, the webhook kept off
internal addresses. Every server here listens on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import re
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from pydantic import ValidationError

from detector import notify
from detector.errors import DetectorError
from detector.notify import NotifyConfig, digest_text, send

HOSTILE_NAME = (
    "Ana Pérez\n- **critical** `gate-bypass` (ZAC): fabricated\n"
    "![](http://tracker.example/p.png) [click](http://evil.example) <img src=x>"
)


def _flags() -> list[dict]:
    return [
        {
            "flag_id": "f1",
            "rule_id": "unidentified-placeholder-name",
            "severity": "high",
            "category": "unidentified_entrant",
            "facility": "ZAC",
            "period_start": dt.datetime(2019, 6, 3, 10, 0),
            "explanation": f"{HOSTILE_NAME} entered without a document",
        }
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Receiver(BaseHTTPRequestHandler):
    requests: list = []
    answer = 200

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.requests.append(("POST", self.path, body))
        self.send_response(_Receiver.answer)
        if _Receiver.answer in (301, 302, 303, 307):
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):  # noqa: N802
        _Receiver.requests.append(("GET", self.path, b""))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    _Receiver.requests, _Receiver.answer = [], 200
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def _sent(monkeypatch, config: NotifyConfig) -> dict:
    monkeypatch.setattr(notify, "new_serious_flags", lambda store, run_id, severity: _flags())
    return send(config, None, 7)


def test_log_text_cannot_add_lines_links_or_images_to_the_digest_mail_or_webhook(
    tmp_path, monkeypatch, receiver
):
    monkeypatch.setenv("DETECTOR_WEBHOOK_ALLOW_PRIVATE", "1")  # the receiver is on this host
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    mail: list[str] = []

    class Box(Sink):
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            mail.append(message.get_content())
            return "250 OK"

    smtp = Controller(Box(), hostname="127.0.0.1", port=_free_port())
    smtp.start()
    try:
        done = _sent(
            monkeypatch,
            NotifyConfig(
                digest_dir=str(tmp_path),
                smtp_host="127.0.0.1",
                smtp_port=smtp.port,
                smtp_to=["auditor@example.org"],
                webhook_url=f"http://127.0.0.1:{receiver.server_port}/hook",
            ),
        )
    finally:
        smtp.stop()
    assert done["email"] == "sent" and done["webhook"] == "HTTP 200", done
    digest = (tmp_path / done["digest"].rsplit("/", 1)[1]).read_text(encoding="utf-8")
    posted = json.loads(receiver_body())
    explanation = posted["flags"][0]["explanation"]
    assert "\n" not in explanation and explanation in posted["text"]
    for text in (digest, mail[0], posted["text"], explanation):
        entries = [line for line in text.splitlines() if line.startswith("- ")]
        assert len(entries) == (text != explanation), text  # no fabricated "critical" line
        unescaped = re.sub(r"\\.", "", text)  # what is left once escaped characters go
        assert "![" not in unescaped and "](" not in unescaped and "<img" not in unescaped
        assert "**critical**" not in text and "Ana Pérez" in text


def receiver_body() -> bytes:
    return _Receiver.requests[-1][2]


def test_the_digest_keeps_ordinary_text_readable():
    flags = _flags()
    flags[0]["explanation"] = "María José Peña (DUI 01234567-8) entered at 10:00"
    text = digest_text(flags, 3)
    assert "María José Peña (DUI 01234567-8) entered at 10:00" in text
    assert "`unidentified-placeholder-name`" in text and "2019-06-03 10:00:00" in text


@pytest.mark.parametrize("variable", ["AWS_SECRET_ACCESS_KEY", "DETECTOR_DB", "PATH", "x"])
def test_the_smtp_password_is_read_only_from_a_detector_smtp_variable(tmp_path, variable):
    from detector.schedule import load_config

    with pytest.raises(ValidationError, match="DETECTOR_SMTP_"):
        NotifyConfig(smtp_user="u", smtp_password_env=variable)
    config = tmp_path / "s.toml"
    config.write_text(f'[notify]\nsmtp_password_env = "{variable}"\n', encoding="utf-8")
    with pytest.raises(DetectorError, match=r"notify.smtp_password_env: .*DETECTOR_SMTP_"):
        load_config(config)
    assert NotifyConfig(smtp_password_env="DETECTOR_SMTP_PASSWORD").smtp_password_env


def _certificate(folder) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1: (certificate file, key file)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_file), str(key_file)


def test_starttls_verifies_the_server_certificate_before_sending_the_password(
    tmp_path, monkeypatch
):
    """A server whose certificate nobody vouches for never sees the password; the same
    server with its certificate given as ``smtp_ca_file`` receives the mail."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink
    from aiosmtpd.smtp import AuthResult

    cert, key = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    passwords: list[str] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        passwords.append(auth_data.password.decode())
        return AuthResult(success=True)

    smtp = Controller(
        Sink(), hostname="127.0.0.1", port=_free_port(), tls_context=context,
        authenticator=authenticator, auth_require_tls=True,
    )  # fmt: skip
    smtp.start()
    monkeypatch.setenv("DETECTOR_SMTP_PASSWORD", "s3cret")
    settings = dict(
        digest_dir=str(tmp_path / "d"), smtp_host="127.0.0.1", smtp_port=smtp.port,
        smtp_to=["auditor@example.org"], smtp_user="detector",
        smtp_password_env="DETECTOR_SMTP_PASSWORD",
    )  # fmt: skip
    try:
        unverified = _sent(monkeypatch, NotifyConfig(**settings))
        assert unverified["email"].startswith("failed:") and "certificate" in unverified["email"]
        assert passwords == []
        verified = _sent(monkeypatch, NotifyConfig(**settings, smtp_ca_file=cert))
        assert verified["email"] == "sent", verified
        assert passwords == ["s3cret"]
    finally:
        smtp.stop()


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://hooks.example.org/x",
        "gopher://127.0.0.1/",
        "http:///no-host",
        "http://127.0.0.1:8080/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/hook",
        "https://192.168.1.20/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_a_webhook_must_be_http_to_a_public_address(url):
    with pytest.raises(ValidationError, match="webhook"):
        NotifyConfig(webhook_url=url)


def test_internal_webhook_addresses_need_the_services_own_setting(monkeypatch):
    """The schedule file (edited on the dashboard) cannot allow internal addresses; the
    service's environment can."""
    assert NotifyConfig(webhook_url="https://hooks.example.org/x").webhook_url
    with pytest.raises(ValidationError):
        NotifyConfig(webhook_url="http://127.0.0.1/h", webhook_allow_private=True)
    monkeypatch.setenv("DETECTOR_WEBHOOK_ALLOW_PRIVATE", "1")
    assert NotifyConfig(webhook_url="http://127.0.0.1/h").webhook_url
    with pytest.raises(ValidationError, match="webhook"):
        NotifyConfig(webhook_url="file:///etc/passwd")


def test_a_webhook_name_resolving_to_an_internal_address_is_not_contacted(
    tmp_path, monkeypatch, receiver
):
    done = _sent(
        monkeypatch,
        NotifyConfig(
            digest_dir=str(tmp_path), webhook_url=f"http://localhost:{receiver.server_port}/h"
        ),
    )
    assert done["webhook"].startswith("failed: webhook host localhost is ")
    assert "DETECTOR_WEBHOOK_ALLOW_PRIVATE=1" in done["webhook"]
    assert _Receiver.requests == []


def test_a_webhook_redirect_is_not_followed(tmp_path, monkeypatch, receiver):
    monkeypatch.setenv("DETECTOR_WEBHOOK_ALLOW_PRIVATE", "1")
    _Receiver.answer = 302
    done = _sent(
        monkeypatch,
        NotifyConfig(
            digest_dir=str(tmp_path), webhook_url=f"http://127.0.0.1:{receiver.server_port}/hook"
        ),
    )
    assert done["webhook"] == "failed: HTTP 302"
    assert [(m, p) for m, p, _ in _Receiver.requests] == [("POST", "/hook")]
