"""Notifiers: log, webhook (Slack-compatible JSON) and e-mail over SMTP.

Each ``send(event)`` either returns or raises; :func:`deliver_with_retry` retries with
exponential backoff and never lets an exception escape (a notifier outage must never
break monitoring - the undelivered notice stays pending in the state DB and is retried
on the next pass).
"""

from __future__ import annotations

import json
import logging
import smtplib
import time
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol

log = logging.getLogger("bqx.alerts")


@dataclass(frozen=True)
class AlertEvent:
    """One notification: ``kind`` is ``firing`` or ``resolved``."""

    kind: str
    alert_id: int
    rule: str
    severity: str
    pair: str | None
    message: str
    fingerprint: str
    count: int

    def title(self) -> str:
        tag = "RESOLVED" if self.kind == "resolved" else self.severity.upper()
        return f"[{tag}] {self.rule}" + (f" {self.pair}" if self.pair else "")

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Notifier(Protocol):
    name: str

    def send(self, event: AlertEvent) -> None: ...


class LogNotifier:
    """Writes the alert to the ``bqx.alerts`` logger (WARNING; resolves at INFO)."""

    name = "log"

    def send(self, event: AlertEvent) -> None:
        lvl = logging.INFO if event.kind == "resolved" else logging.WARNING
        log.log(lvl, "%s: %s", event.title(), event.message)


class WebhookNotifier:
    """POSTs a Slack-compatible body ``{"text": ..., "alert": {...}}`` to ``url``."""

    name = "webhook"

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def send(self, event: AlertEvent) -> None:
        body = json.dumps(
            {"text": f"{event.title()}: {event.message}", "alert": event.as_dict()}
        ).encode()
        req = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
            if r.status >= 300:
                raise OSError(f"webhook answered {r.status}")


class SmtpNotifier:
    """Sends a plain-text e-mail; STARTTLS and login are optional."""

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: list[str],
        *,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.host, self.port = host, port
        self.sender, self.recipients = sender, recipients
        self.starttls, self.username, self.password = starttls, username, password
        self.timeout_s = timeout_s

    def send(self, event: AlertEvent) -> None:
        msg = EmailMessage()
        msg["Subject"] = f"BQX {event.title()}"
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg.set_content(f"{event.message}\n\n{json.dumps(event.as_dict(), indent=2)}\n")
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as s:
            if self.starttls:
                s.starttls()
            if self.username:
                s.login(self.username, self.password or "")
            s.send_message(msg)


def deliver_with_retry(
    notifier: Notifier,
    event: AlertEvent,
    *,
    retries: int = 2,
    backoff_s: float = 0.2,
) -> str | None:
    """Send with ``retries`` retries (backoff doubling from ``backoff_s``).

    Returns None on success, else the last error text (never raises)."""
    err: str | None = None
    for attempt in range(retries + 1):
        try:
            notifier.send(event)
            return None
        except Exception as e:
            err = f"{type(e).__name__}: {e}"
            if attempt < retries:
                time.sleep(backoff_s * (2**attempt))
    log.error("notifier %s failed for alert %s: %s", notifier.name, event.alert_id, err)
    return err


def notifiers_from_settings(cfg: Any) -> list[Notifier]:
    """The notifiers ``[monitor]`` configures: always the log, plus a webhook when
    ``webhook_url`` is set and e-mail when ``smtp_host`` is set (the password is read from
    the environment variable ``smtp_password_env``, never from the settings)."""
    import os

    out: list[Notifier] = [LogNotifier()]
    if cfg.webhook_url:
        out.append(WebhookNotifier(cfg.webhook_url))
    if cfg.smtp_host:
        if not cfg.smtp_to:
            log.warning("monitor.smtp_host is set but monitor.smtp_to is empty: no e-mail")
        else:
            out.append(
                SmtpNotifier(
                    cfg.smtp_host,
                    cfg.smtp_port,
                    cfg.smtp_from,
                    list(cfg.smtp_to),
                    starttls=cfg.smtp_starttls,
                    username=cfg.smtp_username,
                    password=os.environ.get(cfg.smtp_password_env) if cfg.smtp_username else None,
                )
            )
    return out
