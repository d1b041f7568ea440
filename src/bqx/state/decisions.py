"""The decision log: every served decision, its realised target, and the background writer."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

if TYPE_CHECKING:
    import pandas as pd


from bqx.state._base import (
    StateBase,
    UTCDateTime,
    _frame,
    as_utc,
    bind_rows,
    compiled_insert,
    utcnow,
)

log = logging.getLogger(__name__)

SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")

#: Columns of the decision log, in the order :meth:`StateDB.read_decisions` returns them.
DECISION_COLUMNS: tuple[str, ...] = (
    "decision_id",
    "request_time",
    "pair",
    "asof_ts",
    "horizon",
    "prediction",
    "interval_lo",
    "interval_hi",
    "confidence_level",
    "signal",
    "signal_strength",
    "signal_reason",
    "model_name",
    "model_version",
    "latency_ms",
    "feature_hash",
    "key_id",
    "realized_target",
    "realized_at",
    "extra",
)


def new_decision_id() -> str:
    """A fresh decision id (uuid4 text). The API can return it before the row is written.

    ``str(uuid.uuid4())`` without the ``UUID`` object: the same 16 random bytes with the
    same version and variant bits, formatted the same way (~1 us instead of ~4 us)."""
    n = int.from_bytes(os.urandom(16), "big")
    n = (n & _UUID4_CLEAR) | _UUID4_SET
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# uuid.UUID(version=4): variant bits 10 (RFC 4122) at 48-63, version 4 at 76-79
_UUID4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID4_SET = (0x8000 << 48) | (4 << 76)


def define(md: sa.MetaData, p: str) -> dict[str, sa.Table]:
    """This family's tables (``p``: the table-name prefix)."""
    decisions = sa.Table(
        f"{p}decisions",
        md,
        sa.Column("decision_id", sa.String(64), primary_key=True),
        sa.Column("request_time", UTCDateTime, nullable=False),
        sa.Column("pair", sa.String(16), nullable=False),
        sa.Column("asof_ts", UTCDateTime),
        sa.Column("horizon", sa.Integer),
        sa.Column("prediction", sa.Float),
        sa.Column("interval_lo", sa.Float),
        sa.Column("interval_hi", sa.Float),
        sa.Column("confidence_level", sa.Float),
        sa.Column("signal", sa.String(16)),
        sa.Column("signal_strength", sa.Float),
        sa.Column("signal_reason", sa.Text),
        sa.Column("model_name", sa.Text),
        sa.Column("model_version", sa.String(64)),
        sa.Column("latency_ms", sa.Float),
        sa.Column("feature_hash", sa.Text),
        # no foreign key on purpose: the log must never reject a decision because of a key
        # problem (and `bqx predict` logs decisions without a key)
        sa.Column("key_id", sa.String(32)),
        # filled later by monitoring, when the target becomes known
        sa.Column("realized_target", sa.Float),
        sa.Column("realized_at", UTCDateTime),
        # free-form JSON for what the columns do not cover (A/B arm, request id, ...)
        sa.Column("extra", sa.JSON),
    )
    sa.Index(f"{p}ix_decisions_pair_time", decisions.c.pair, decisions.c.request_time)
    sa.Index(f"{p}ix_decisions_pair_asof", decisions.c.pair, decisions.c.asof_ts)
    return {"decisions": decisions}


class DecisionsMixin(StateBase):
    # -- decision log -------------------------------------------------------------------
    def log_decision(
        self,
        *,
        pair: str,
        prediction: float | None,
        asof_ts: Any = None,
        horizon: int | None = None,
        interval_lo: float | None = None,
        interval_hi: float | None = None,
        confidence_level: float | None = None,
        signal: str | None = None,
        signal_strength: float | None = None,
        signal_reason: str | None = None,
        model_name: str | None = None,
        model_version: str | int | None = None,
        latency_ms: float | None = None,
        feature_hash: str | None = None,
        key_id: str | None = None,
        decision_id: str | None = None,
        request_time: Any = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Append one decision synchronously; returns its id (generated when not given).

        On the request path prefer :class:`DecisionLogWriter` (no lock waits there).
        """
        row = {
            "decision_id": decision_id,
            "request_time": request_time,
            "pair": pair,
            "asof_ts": asof_ts,
            "horizon": horizon,
            "prediction": prediction,
            "interval_lo": interval_lo,
            "interval_hi": interval_hi,
            "confidence_level": confidence_level,
            "signal": signal,
            "signal_strength": signal_strength,
            "signal_reason": signal_reason,
            "model_name": model_name,
            "model_version": model_version,
            "latency_ms": latency_ms,
            "feature_hash": feature_hash,
            "key_id": key_id,
            "extra": dict(extra) if extra is not None else None,
        }
        return self.log_decisions([row])[0]

    def log_decisions(
        self, rows: Iterable[Mapping[str, Any]], *, if_absent: bool = False
    ) -> list[str]:
        """Append many decisions in one transaction; returns their ids in order.

        Keys must be columns of :data:`DECISION_COLUMNS` (a typo is an error, not a silently
        dropped field). Missing ``decision_id``/``request_time`` are filled in.
        ``if_absent=True`` skips rows whose ``decision_id`` is already stored (insert-if-
        absent), so a batch can be replayed after a failure whose commit outcome is unknown.
        """
        # rows from DecisionLogWriter.submit were prepared (validated) on the request path
        prepared = [r if type(r) is _Prepared else _prepare_decision(r) for r in rows]
        if prepared:
            if if_absent and self.dialect == "sqlite":
                # the background writer's path: the statement compiled once, the values
                # bound by the same SQLAlchemy type processors a Core execute applies
                sql, procs = self._decision_insert_sql()
                params = bind_rows(prepared, procs)
                self._write(lambda conn: conn.exec_driver_sql(sql, params))
            else:
                stmt = self._insert_if_absent() if if_absent else self.t.decisions.insert()
                self._write(lambda conn: conn.execute(stmt, prepared))
        return [r["decision_id"] for r in prepared]

    def _decision_insert_sql(self) -> tuple[str, list[tuple[str, Any]]]:
        """SQLite insert-if-absent of a decision row: (SQL text with ``?`` parameters, the
        bind processor of each parameter's column, in order). Compiled once per StateDB:
        a Core execute per batch re-did statement lookup and per-value bind processing
        through SQLAlchemy's layers (half the writer thread's CPU for a batch of 4 rows)."""
        hit = self.__dict__.get("_dec_insert_sql")
        if hit is None:
            hit = compiled_insert(self, self._insert_if_absent(), self.t.decisions)
            self.__dict__["_dec_insert_sql"] = hit
        return hit

    def _insert_if_absent(self) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(self.t.decisions).on_conflict_do_nothing(
                index_elements=["decision_id"]
            )
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(self.t.decisions).on_conflict_do_nothing(
            index_elements=["decision_id"]
        )

    def read_decisions(
        self,
        pair: str | Sequence[str] | None = None,
        start: Any = None,
        end: Any = None,
        *,
        by: Literal["request_time", "asof_ts"] = "request_time",
        limit: int | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Decisions with ``start <= <by> <= end`` (bounds optional), sorted by ``by``.

        Columns are :data:`DECISION_COLUMNS` (or the subset ``columns``, in that order);
        time columns are ``datetime64[ns, UTC]``. ``limit`` keeps the most recent rows.
        """
        d = self.t.decisions
        names = DECISION_COLUMNS if columns is None else tuple(columns)
        unknown = set(names) - _DECISION_SET
        if unknown:
            raise ValueError(f"unknown decision column(s): {', '.join(sorted(unknown))}")
        tcol = d.c[by]
        # timestamps as the driver returns them (SQLite: text), converted in bulk by _frame:
        # the per-row conversion of the UTC type was a large part of reading a day of 28 pairs
        q = sa.select(
            *[
                sa.type_coerce(d.c[c], sa.String).label(c)
                if isinstance(d.c[c].type, UTCDateTime)
                else d.c[c]
                for c in names
            ]
        )
        if pair is not None:
            pairs = [pair] if isinstance(pair, str) else list(pair)
            q = q.where(d.c.pair.in_(pairs))
        if start is not None:
            q = q.where(tcol >= as_utc(start))
        if end is not None:
            q = q.where(tcol <= as_utc(end))
        if limit is not None:
            q = q.order_by(tcol.desc(), d.c.decision_id.desc()).limit(limit)
        else:
            q = q.order_by(tcol, d.c.decision_id)
        with self._read() as conn:
            rows = conn.execute(q).all()
        df = _frame(rows, [d.c[c] for c in names])
        if limit is not None:
            df = df.iloc[::-1].reset_index(drop=True)
        return df

    def count_decisions(self, pair: str | None = None) -> int:
        d = self.t.decisions
        q = sa.select(sa.func.count()).select_from(d)
        if pair is not None:
            q = q.where(d.c.pair == pair)
        with self._read() as conn:
            return int(conn.execute(q).scalar_one())

    def set_realized(
        self,
        values: Mapping[str, float | None] | Iterable[tuple[str, float | None]],
        at: Any = None,
    ) -> int:
        """Record realised targets for decisions (monitoring); returns rows updated. A value
        of None closes the decision as *unknowable* (its horizon crossed a data gap):
        ``realized_at`` is set and ``realized_target`` stays NULL."""
        items = list(values.items()) if isinstance(values, Mapping) else list(values)
        if not items:
            return 0
        when = as_utc(at) if at is not None else utcnow()
        d = self.t.decisions
        stmt = (
            d.update()
            .where(d.c.decision_id == sa.bindparam("b_id"))
            .values(realized_target=sa.bindparam("b_val"), realized_at=sa.bindparam("b_at"))
        )
        params = [
            {"b_id": i, "b_val": None if v is None else float(v), "b_at": when} for i, v in items
        ]
        return int(self._write(lambda conn: conn.execute(stmt, params).rowcount))


_DECISION_SET = frozenset(DECISION_COLUMNS)
_DECISION_FLOAT_COLUMNS = (
    "prediction",
    "interval_lo",
    "interval_hi",
    "confidence_level",
    "signal_strength",
    "latency_ms",
    "realized_target",
)


class _Prepared(dict):
    """A row :func:`_prepare_decision` made (every column, validated and coerced):
    :meth:`DecisionsMixin.log_decisions` does not prepare it a second time."""

    __slots__ = ()


def _prepare_decision(r: Mapping[str, Any]) -> dict[str, Any]:
    if not r.keys() <= _DECISION_SET:
        extra = set(r) - _DECISION_SET
        raise ValueError(f"unknown decision field(s): {', '.join(sorted(extra))}")
    row: dict[str, Any] = _Prepared({c: r.get(c) for c in DECISION_COLUMNS})
    if not row["pair"]:
        raise ValueError("a decision needs a pair")
    if row["decision_id"] is None:
        row["decision_id"] = new_decision_id()
    else:
        row["decision_id"] = str(row["decision_id"])
    if row["request_time"] is None:
        row["request_time"] = utcnow()
    if row["model_version"] is not None:
        row["model_version"] = str(row["model_version"])
    for c in _DECISION_FLOAT_COLUMNS:
        if row[c] is not None:
            row[c] = float(row[c])  # numpy scalars -> float (psycopg cannot adapt them)
    if row["horizon"] is not None:
        row["horizon"] = int(row["horizon"])
    return row


# ---------------------------------------------------------------------------------------
# background decision writer: see bqx.state.decision_writer (buffer, spill, replay)
# ---------------------------------------------------------------------------------------
from bqx.state.decision_writer import DecisionLogWriter  # noqa: E402, F401
