"""One redaction function for every message, log line and CLI output that may hold a URL.

``redact(text)`` hides passwords wherever they appear: in URL user-info
(``postgresql://user:secret@host`` -> ``postgresql://user:***@host``), in query strings and
libpq key/value DSNs (``password=secret`` -> ``password=***``) and in ``token``/``secret``/
``api_key`` parameters. It is idempotent and leaves everything else alone (operators need
host and database in their logs).

API responses must not show even that (issue 18.16: hosts, ports, users, database names,
absolute file paths and PIDs belong in logs, not in bodies a client sees):
:func:`public_address` gives only the scheme and a short fingerprint of the full URL, so an
operator can match a 503 body against the log line that names the address in full.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

_USERINFO = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<pw>[^@\s/]*)@")
_KV = re.compile(
    r"(?P<k>\b(?:password|passwd|pwd|token|secret|api_key|apikey|access_key|secret_key)"
    r"\s*[=:]\s*)(?P<q>['\"]?)(?P<v>[^\s&;'\",]+)",
    re.IGNORECASE,
)
_MASK = "***"


def redact(text: object) -> str:
    """``text`` (any object, stringified) with every password/secret replaced by ``***``."""
    s = str(text)
    s = _USERINFO.sub(lambda m: f"{m['pre']}:{_MASK}@" if m["pw"] != _MASK else m[0], s)
    return _KV.sub(lambda m: f"{m['k']}{m['q']}{_MASK}", s)


def public_address(url: str | None) -> str | None:
    """What a response may say about a server address: scheme and a 10-hex fingerprint.

    ``postgresql://app:pw@db.internal:5432/bqx`` -> ``postgresql://<redacted>#3f2a9c01be``.
    The fingerprint is of the *redacted* URL, so the log line (which shows the redacted URL)
    identifies it; nothing about host, port, user, database or file path is revealed.
    """
    if not url:
        return None
    red = redact(url)
    scheme = red.split("://", 1)[0] if "://" in red else "file"
    scheme = scheme.split("+", 1)[0]
    digest = hashlib.sha256(red.encode()).hexdigest()[:10]
    return f"{scheme}://<redacted>#{digest}"


def redact_tree(obj: Any) -> Any:
    """``obj`` (JSON-like: dicts, lists, strings) with :func:`redact` applied to strings."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: redact_tree(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact_tree(v) for v in obj]
    return obj
