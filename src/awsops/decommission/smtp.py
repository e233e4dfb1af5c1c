"""Email notices over SMTP: one connection per run, STARTTLS unless told otherwise.

Credentials come from the environment (``AWSOPS_SMTP_USERNAME`` and
``AWSOPS_SMTP_PASSWORD`` unless the config names other variables): both set means
AUTH after TLS, neither means none, one alone is an error. They are never sent without
TLS. The server's certificate is verified (``ca_file`` for a private CA). An owner is
reached at their address if the owner is one, else at ``<name>@default_domain`` when
that is configured; otherwise this channel cannot reach them.
"""

from __future__ import annotations

import os
import re
import smtplib
import ssl
from collections.abc import Callable, Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from awsops.decommission import notices
from awsops.decommission.channels import Delivery
from awsops.decommission.notices import Notice
from awsops.decommission.owners import Owner
from awsops.markconfig import SmtpSettings

EMAIL_RE = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+")
USER_RE = re.compile(r"[\w.+-]+", re.ASCII)


class SmtpChannel:
    name = "smtp"

    def __init__(
        self,
        settings: SmtpSettings,
        environ: Mapping[str, str] | None = None,
        connect: Callable[[SmtpSettings], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.environ = os.environ if environ is None else environ
        self._connect_raw = connect or _open

    def address(self, owner: Owner) -> str | None:
        contact = (owner.contact or "").strip()
        if EMAIL_RE.fullmatch(contact):
            return contact
        if contact and self.settings.default_domain and USER_RE.fullmatch(contact):
            return f"{contact}@{self.settings.default_domain}"
        return None

    def credentials(self) -> tuple[str, str] | None:
        s = self.settings
        user, password = self.environ.get(s.username_env), self.environ.get(s.password_env)
        if bool(user) != bool(password):
            raise smtplib.SMTPException(
                f"set both {s.username_env} and {s.password_env} (or neither)"
            )
        return (str(user), str(password)) if user and password else None

    def connect(self) -> Any:
        """An SMTP connection: TLS as configured, then AUTH if credentials are set."""
        s = self.settings
        creds = self.credentials()
        if creds and s.tls == "none":
            raise smtplib.SMTPException("refusing to send credentials without TLS (tls: none)")
        conn = self._connect_raw(s)
        try:
            conn.ehlo()
            if s.tls == "starttls":
                if not conn.has_extn("starttls"):
                    raise smtplib.SMTPException("the server does not offer STARTTLS")
                conn.starttls(context=tls_context(s))
                conn.ehlo()
            if creds:
                conn.login(*creds)
        except BaseException:
            conn.close()
            raise
        return conn

    def deliver(self, items: Sequence[tuple[Notice, str]]) -> list[Delivery]:
        if not items:
            return []
        where = f"{self.settings.host}:{self.settings.port}"
        try:
            conn = self.connect()
        except (OSError, smtplib.SMTPException) as exc:
            error = f"SMTP server {where}: {_reason(exc)}"
            return [Delivery(self.name, n, to, False, error) for n, to in items]
        out: list[Delivery] = []
        broken: str | None = None  # the connection is gone: the rest fail with this
        try:
            for notice, to in items:
                if broken is not None:
                    out.append(Delivery(self.name, notice, to, False, broken))
                    continue
                try:
                    conn.send_message(self.message(notice, to))
                except (OSError, smtplib.SMTPException) as exc:
                    error = f"SMTP server {where}: {_reason(exc)}"
                    if isinstance(exc, (OSError, smtplib.SMTPServerDisconnected)):
                        broken = error
                    out.append(Delivery(self.name, notice, to, False, error))
                else:
                    out.append(Delivery(self.name, notice, to, True))
        finally:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()
        return out

    def message(self, notice: Notice, to: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.settings.sender
        msg["To"] = to
        msg["Subject"] = notice.subject()
        msg["Date"] = formatdate(notice.now.timestamp(), usegmt=True)
        msg["Message-ID"] = make_msgid(notice.notice_id)
        msg["X-Awsops-Notice"] = f"{notice.notice_id} {notice.kind}"
        msg.set_content(notices.text(notice))
        return msg


def tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.ca_file)


def _open(settings: SmtpSettings) -> Any:
    if settings.tls == "ssl":
        return smtplib.SMTP_SSL(
            settings.host, settings.port, timeout=settings.timeout, context=tls_context(settings)
        )
    return smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        message = exc.smtp_error
        text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
        return f"{exc.smtp_code} {text}"
    return str(exc) or type(exc).__name__
