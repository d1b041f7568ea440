"""Read-only registry queries straight from MLflow's tables (no ``import mlflow``).

Why: ``import mlflow`` costs 2-4 s, so ``bqx models list`` took 3.6 s where ``bqx --help``
takes 0.25 s (issue 15). The registry the CLI lists lives in three tables of MLflow's
SQLAlchemy store (``model_versions``, ``model_version_tags``, ``registered_model_aliases``),
stable across MLflow 2.x-3.x; reading them with SQLAlchemy Core answers in well under a second.

Only the *read* path of ``models list`` / ``models show`` / ``models history`` uses this
(history: the promotions table of a SQLite state database, without SQLAlchemy and the
``bqx.state`` package, ~0.3-0.5 s of imports); every write (register,
approve, promote) goes through the MLflow client as before. Anything unexpected (a tracking
server over HTTP, a file store, missing tables, a schema we do not recognise) returns
``None`` and the caller falls back to the MLflow client, so this can only make reads faster,
never different: ``tests/training/test_registry_fastread.py`` compares both paths.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

#: MLflow marks soft-deleted versions with this stage; its own searches hide them.
_DELETED = "Deleted_Internal"


_SQL = {
    "versions": "SELECT name, version, creation_time, source, run_id FROM model_versions "
    "WHERE current_stage != :deleted",
    "tags": "SELECT name, version, key, value FROM model_version_tags",
    "aliases": "SELECT name, version, alias FROM registered_model_aliases",
}


def _rows(uri: str) -> tuple[list[Any], list[Any], list[Any]] | None:
    """(versions, tags, aliases) rows; sqlite3 from the standard library for SQLite (no
    SQLAlchemy import: ~0.2 s), SQLAlchemy Core for PostgreSQL."""
    if uri.startswith("sqlite:"):
        import sqlite3

        path = uri.split("sqlite:///", 1)[-1]
        if not path or path == ":memory:" or not Path(path).exists():
            return None
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            out = tuple(
                con.execute(
                    _SQL[k].replace(":deleted", "?"), (_DELETED,) if k == "versions" else ()
                ).fetchall()
                for k in ("versions", "tags", "aliases")
            )
        finally:
            con.close()
        return out  # type: ignore[return-value]
    if uri.startswith(("postgresql:", "postgresql+")):
        import sqlalchemy as sa

        eng = sa.create_engine(uri)
        try:
            with eng.connect() as pg:
                return tuple(  # type: ignore[return-value]
                    [tuple(r) for r in pg.execute(sa.text(_SQL[k]), {"deleted": _DELETED})]
                    for k in ("versions", "tags", "aliases")
                )
        finally:
            eng.dispose()
    return None


def versions(uri: str, names: list[str] | None, like: str = "bqx-") -> list[dict[str, Any]] | None:
    """Rows of registered versions (each with ``tags`` and ``aliases``) of the models
    ``names`` (or of every model whose name starts with ``like``); ``None`` when the store
    cannot be read directly."""
    try:
        got = _rows(uri)
    except Exception:  # any surprise (no tables yet, other schema): the MLflow client answers
        return None
    if got is None:
        return None
    vers, tags, aliases = got

    def keep(name: str) -> bool:
        return name in names if names is not None else name.startswith(like)

    rows = {
        (n, int(v)): {
            "name": n,
            "version": int(v),
            "creation_time": ct,
            "source": src,
            "run_id": rid,
            "tags": {},
            "aliases": [],
        }
        for n, v, ct, src, rid in vers
        if keep(n)
    }
    for n, v, k, val in tags:
        row = rows.get((n, int(v)))
        if row is not None:
            row["tags"][k] = val
    for n, v, a in aliases:
        row = rows.get((n, int(v)))
        if row is not None:
            row["aliases"].append(a)
    return list(rows.values())


def local_dir(source: str) -> Path | None:
    """The directory of an artifact stored on a local path (``file://`` source) when it
    exists, else None. For such sources MLflow's ``download_artifacts`` returns this very
    path (no copy), so loading from it needs no ``import mlflow`` (2-4 s in a fresh process:
    a serving worker's first model, or a candidate it pre-loads for a rollout)."""
    u = urlparse(source)
    if u.scheme not in ("file", "") or u.netloc not in ("", "localhost"):
        return None
    path = Path(unquote(u.path))
    return path if path.is_dir() else None


def local_meta(source: str) -> dict[str, Any] | None:
    """``meta.json`` of an artifact stored on a local path (``file://`` source), or None."""
    d = local_dir(source)
    if d is None:
        return None
    try:
        return json.loads((d / "meta.json").read_text())
    except (OSError, ValueError):
        return None


#: bqx.state.promotions' table and columns (``open_state`` uses no table prefix)
_PROMOTIONS = (
    "SELECT id, pair, model_name, action, from_version, to_version, actor, reason, at "
    "FROM promotions WHERE pair = ? ORDER BY id"
)


def promotion_records(state_url: str, pair: str) -> list[dict[str, Any]] | None:
    """``StateDB.promotion_records(pair)`` of a SQLite state database, read with sqlite3;
    None (the state package answers) for any other database or any surprise."""
    if not state_url.startswith("sqlite:///") or "?" in state_url:
        return None
    path = state_url[len("sqlite:///") :]
    if not path or path == ":memory:" or not Path(path).exists():
        return None
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            cur = con.execute(_PROMOTIONS, (pair,))
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        finally:
            con.close()
        out = [dict(zip(names, r, strict=True)) for r in rows]
        for r in out:  # UTCDateTime on SQLite: naive UTC text
            at = datetime.fromisoformat(r["at"])
            r["at"] = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        return out
    except Exception:
        return None
