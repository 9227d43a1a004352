"""The one mail interface: SMTP (STARTTLS, smtps, login, one connection) or .eml files."""

from __future__ import annotations

import ssl
from email import message_from_bytes, policy

import pytest
import trustme
from aiosmtpd.smtp import AuthResult, LoginPassword
from mailserver import MailServer

from notifications.errors import DeliveryError, PermanentDeliveryError, RecipientDeferred
from notifications.message import build
from notifications.transport import EmlFolder, Smtp, from_url
from worker import log

PASSWORD = "s3cret:p@ss/word"  # a test server's


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    """A client that trusts only the test CA, and checks the host name."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def only_user(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"billing",
        PASSWORD.encode(),
    )
    # handled=False: aiosmtpd then answers 535 itself (True means 'already answered').
    return AuthResult(success=ok, handled=False)


def message(to: str = "ada@example.com", subject: str = "Hello"):
    return build(
        sender="billing@example.org", recipients=[to], subject=subject, text="t", html="<p>h</p>"
    )


def url(server: MailServer, scheme: str = "smtp", password: str = PASSWORD) -> str:
    from urllib.parse import quote

    return f"{scheme}://billing:{quote(password, safe='')}@127.0.0.1:{server.port}"


def test_starttls_and_login_when_the_server_offers_them(ca):
    # Given a server that requires STARTTLS before login
    server = MailServer(
        tls_context=server_context(ca), require_starttls=True, authenticator=only_user
    ).start()
    try:
        client = Smtp(url(server), ssl_context=client_context(ca))
        # When three messages are sent
        for n in range(3):
            client.send(f"k{n}", message(subject=f"m{n}"))
        client.close()
        # Then they arrived over one encrypted, logged-in connection
        assert [str(m["Subject"]) for m in server.messages()] == ["m0", "m1", "m2"]
        assert client.connections == 1 and server.sessions() == 1
    finally:
        server.stop()


def test_smtps_speaks_tls_from_the_first_byte(ca):
    # aiosmtpd counts only STARTTLS as TLS for AUTH; this session is TLS from the start.
    server = MailServer(
        ssl_context=server_context(ca), authenticator=only_user, auth_require_tls=False
    ).start()
    try:
        client = Smtp(url(server, "smtps"), ssl_context=client_context(ca))
        client.send("k", message())
        client.close()
        assert len(server.messages()) == 1
    finally:
        server.stop()


def test_a_wrong_password_is_retried_not_failed_and_never_logged(ca):
    server = MailServer(tls_context=server_context(ca), authenticator=only_user).start()
    try:
        client = Smtp(url(server, password="wrong"), ssl_context=client_context(ca))
        with pytest.raises(DeliveryError) as caught:
            client.send("k", message())
        assert not isinstance(caught.value, PermanentDeliveryError)
        assert PASSWORD not in (log.redact_url(url(server)) or "")
        assert "wrong" not in str(caught.value)
    finally:
        server.stop()


def test_replies_are_sorted_into_retry_for_one_for_all_or_never(smtp):
    smtp.refuse["gone@example.com"] = "550 5.1.1 no such user"
    smtp.defer["busy@example.com"] = 1
    client = Smtp(smtp.url)
    with pytest.raises(PermanentDeliveryError, match=r"550 5\.1\.1 no such user"):
        client.send("a", message("gone@example.com"))
    with pytest.raises(RecipientDeferred, match="450"):
        client.send("b", message("busy@example.com"))
    client.send("c", message("busy@example.com"))  # the same connection goes on
    smtp.closing = True
    with pytest.raises(DeliveryError) as closing:
        client.send("d", message())
    assert not isinstance(closing.value, PermanentDeliveryError | RecipientDeferred)
    smtp.closing = False
    smtp.stop()
    with pytest.raises(DeliveryError):
        client.send("e", message())
    smtp.start()
    client.send("f", message())
    assert len(smtp.messages()) == 2


def test_without_a_url_emails_are_eml_files_named_by_key(settings):
    transport = from_url(None, settings.mail)
    assert isinstance(transport, EmlFolder)
    transport.send("invoice-1", message(subject="first"))
    transport.send("invoice-1", message(subject="again"))
    [path] = settings.mail.glob("*.eml")
    assert path.name == "invoice-1.eml"
    assert path.stat().st_mode & 0o777 == 0o600
    assert message_from_bytes(path.read_bytes(), policy=policy.default)["Subject"] == "again"
