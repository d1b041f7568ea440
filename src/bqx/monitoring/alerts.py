"""Alert rules evaluated each pass: fire, de-duplicate, escalate, resolve, notify.

Built on the ``alerts`` table (one open alert per fingerprint, enforced by the database)
and ``alert_notices`` (what each notifier has been told). Semantics, as Alertmanager:

* a condition that holds raises/bumps its alert (same fingerprint -> same row);
* a firing alert notifies once; again only on escalation (higher severity than last
  sent) or after ``repeat_interval`` (no repeats once acknowledged, ``bqx alerts ack``,
  unless it escalates past the severity it had then);
* a condition evaluated and found clear resolves its open alert and sends a resolve
  notification to every notifier that was told it fired;
* delivery failures are retried with backoff inside the pass, then left pending and
  retried next pass (nothing is lost; ``failures`` counts them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pandas as pd

from bqx.monitoring.notifiers import AlertEvent, Notifier, deliver_with_retry
from bqx.state._base import as_utc, utcnow

_RANK = {"info": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True)
class Condition:
    """The outcome of one rule for one subject: ``firing`` with ``severity`` or clear."""

    rule: str
    firing: bool
    message: str = ""
    severity: str = "warning"
    pair: str | None = None
    fingerprint: str | None = None

    @property
    def fp(self) -> str:
        return self.fingerprint or f"{self.rule}:{self.pair or '*'}"


@dataclass
class AlertManager:
    """Evaluates conditions against the state DB and delivers notices."""

    state: Any
    notifiers: list[Notifier] = field(default_factory=list)
    repeat_interval: timedelta = timedelta(hours=4)
    retries: int = 2
    backoff_s: float = 0.2
    failures: dict[str, int] = field(default_factory=dict)

    def evaluate(self, conditions: list[Condition], at: Any = None) -> dict[str, Any]:
        """Apply ``conditions`` (raise/bump or resolve), then deliver pending notices."""
        when = as_utc(at) if at is not None else utcnow()
        fired: list[str] = []
        resolved: list[str] = []
        for c in conditions:
            if c.firing:
                self.state.raise_alert(
                    c.rule,
                    c.message,
                    severity=c.severity,
                    pair=c.pair,
                    fingerprint=c.fp,
                    at=when,
                )
                fired.append(c.fp)
            elif self.state.resolve_alert(c.fp, at=when):
                resolved.append(c.fp)
        sent = self.deliver(at=when)
        return {"firing": fired, "resolved": resolved, **sent}

    def deliver(self, at: Any = None) -> dict[str, Any]:
        """Send every pending notice (new, escalated, repeat due, resolved)."""
        when = pd.Timestamp(as_utc(at) if at is not None else utcnow())
        alerts = self.state.read_alerts()
        notices = self.state.read_notices()
        acks = self.state.read_acks() if hasattr(self.state, "read_acks") else {}
        sent = failed = 0
        for r in alerts.itertuples(index=False):
            aid = int(r.id)
            resolved = pd.notna(r.resolved_at)
            for n in self.notifiers:
                prev = notices.get((aid, n.name))
                if resolved:
                    # resolve notice only for alerts this notifier was told about
                    if prev is None or prev.get("sent_at") is None or prev.get("resolve_sent_at"):
                        continue
                    kind = "resolved"
                else:
                    if prev is not None and prev.get("sent_at") is not None:
                        escalated = _RANK[str(r.severity)] > _RANK.get(
                            str(prev.get("sent_severity")), -1
                        )
                        due = when - pd.Timestamp(prev["sent_at"]) >= self.repeat_interval
                        ack = acks.get(aid)
                        if ack is not None and _RANK[str(r.severity)] <= _RANK.get(
                            str(ack["severity"]), -1
                        ):
                            due = False  # acknowledged: no repeats until it escalates
                        if not (escalated or due):
                            continue
                    kind = "firing"
                ev = AlertEvent(
                    kind,
                    aid,
                    str(r.rule),
                    str(r.severity),
                    None if pd.isna(r.pair) else str(r.pair),
                    str(r.message),
                    str(r.fingerprint),
                    int(r.count),
                )
                err = deliver_with_retry(n, ev, retries=self.retries, backoff_s=self.backoff_s)
                self.state.record_notice(
                    aid,
                    n.name,
                    ok=err is None,
                    severity=str(r.severity),
                    resolve=kind == "resolved",
                    error=err,
                    at=when,
                )
                if err is None:
                    sent += 1
                else:
                    failed += 1
                    self.failures[n.name] = self.failures.get(n.name, 0) + 1
        return {"sent": sent, "failed": failed}
