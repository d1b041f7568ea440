"""API keys (low level: :mod:`bqx.serving.auth` builds on these)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    pass

from bqx.state._base import StateBase, UTCDateTime, as_utc, utcnow

log = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("reader", "trader", "admin")


def define(md: sa.MetaData, p: str) -> dict[str, sa.Table]:
    """This family's tables (``p``: the table-name prefix)."""
    api_keys = sa.Table(
        f"{p}api_keys",
        md,
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.Text),
        sa.Column("role", sa.String(16), nullable=False),
        # hash of the secret (never the key itself), its per-key salt and the scheme used
        sa.Column("hash", sa.String(128), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("params", sa.String(64), nullable=False),
        # requests/second; NULL = the service default (settings.serve.rate_limit)
        sa.Column("rate", sa.Float),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime),
        sa.Column("last_used_at", UTCDateTime),
        sa.CheckConstraint("role IN ('reader', 'trader', 'admin')", name=f"{p}ck_api_keys_role"),
    )
    return {"api_keys": api_keys}


class KeysMixin(StateBase):
    def insert_api_key(
        self,
        *,
        key_id: str,
        role: str,
        hash: str,
        salt: str,
        params: str,
        name: str | None = None,
        rate: float | None = None,
        created_at: Any = None,
    ) -> None:
        """Store a key's hash. Raises ``IntegrityError`` if ``key_id`` exists."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        row = {
            "key_id": key_id,
            "name": name,
            "role": role,
            "hash": hash,
            "salt": salt,
            "params": params,
            "rate": rate,
            "created_at": created_at if created_at is not None else utcnow(),
        }
        self._write(lambda conn: conn.execute(self.t.api_keys.insert(), row))

    def get_api_key(self, key_id: str) -> dict[str, Any] | None:
        """One key row (including hash and salt) or ``None``."""
        k = self.t.api_keys
        with self._read() as conn:
            r = conn.execute(sa.select(k).where(k.c.key_id == key_id)).mappings().first()
        return dict(r) if r is not None else None

    def list_api_keys(self) -> list[dict[str, Any]]:
        """All key rows without hash/salt, oldest first."""
        k = self.t.api_keys
        cols = [c for c in k.c if c.name not in ("hash", "salt")]
        with self._read() as conn:
            rows = conn.execute(sa.select(*cols).order_by(k.c.created_at, k.c.key_id))
            return [dict(r) for r in rows.mappings()]

    def revoke_api_key(self, key_id: str, at: Any = None) -> bool:
        """Mark a key revoked. False if unknown; an already revoked key keeps its first
        revocation time (and True is returned)."""
        k = self.t.api_keys
        when = at if at is not None else utcnow()

        def _do(conn: Connection) -> bool:
            exists = conn.execute(sa.select(k.c.key_id).where(k.c.key_id == key_id)).first()
            if exists is None:
                return False
            conn.execute(
                k.update()
                .where(k.c.key_id == key_id, k.c.revoked_at.is_(None))
                .values(revoked_at=when)
            )
            return True

        return self._write(_do)

    def touch_api_keys(self, last_used: Mapping[str, Any]) -> None:
        """Record ``last_used_at`` for several keys in one transaction (called in batches,
        not per request: see ``ApiKeys.flush_last_used``)."""
        if not last_used:
            return
        k = self.t.api_keys
        stmt = (
            k.update()
            .where(k.c.key_id == sa.bindparam("b_key_id"))
            .values(last_used_at=sa.bindparam("b_at"))
        )
        params = [{"b_key_id": kid, "b_at": as_utc(at)} for kid, at in last_used.items()]
        self._write(lambda conn: conn.execute(stmt, params))
