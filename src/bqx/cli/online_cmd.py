"""``bqx online status|enable|disable|run``: online learning per pair (:mod:`bqx.online`)."""

from __future__ import annotations

from typing import Any

import typer

from bqx.cli._common import JsonOpt, console, handle_errors, print_json, settings, table

app = typer.Typer(help="Online learning: gated incremental updates of production versions.")

PairsOpt = typer.Option(None, "--pairs", help="Comma-separated pairs (default: all known).")
ReqPairsOpt = typer.Option(..., "--pairs", help="Comma-separated pairs, or 'all'.")


def _state() -> Any:
    from bqx.state import open_state

    return open_state(settings())


def _rows(st: Any, pairs: str | None) -> list[dict[str, Any]]:
    from bqx.universe import normalize_pairs

    known = {r["pair"]: r for r in st.online_states()}
    want = normalize_pairs(pairs) if pairs else sorted(known)
    return [known.get(p) or st.online_state(p) for p in want]


def _short(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "pair": r["pair"],
        "enabled": "yes" if r["enabled"] else "no",
        "paused": "PAUSED" if r["paused"] else "-",
        "streak": r["rejection_streak"],
        "updates": r["updates"],
        "rejected": r["rejections"],
        "last_update": r["last_update_at"],
        "last_v": r["last_version"] or "-",
        "result": r["last_result"] or "-",
    }


@app.command("status")
@handle_errors
def status(pairs: str | None = PairsOpt, as_json: bool = JsonOpt) -> None:
    """Per pair: enabled, paused, rejection streak, last update and its result."""
    s = settings()
    rows = _rows(_state(), pairs)
    if as_json:
        print_json({"every_h": s.online.every_h, "pairs": rows})
        return
    every = f"every {s.online.every_h:g} h" if s.online.every_h > 0 else "off (online.every_h=0)"
    table([_short(r) for r in rows], title=f"online learning: operator job {every}")
    for r in rows:
        if r["paused"]:
            console.print(f"{r['pair']}: paused ({r['paused_reason']}); "
                          f"`bqx online enable --pairs {r['pair']}` resumes")  # fmt: skip


def _set(pairs: str, enabled: bool, as_json: bool) -> None:
    from bqx.universe import normalize_pairs

    st = _state()
    rows = [st.set_online_enabled(p, enabled) for p in normalize_pairs(pairs)]
    if as_json:
        print_json({"pairs": rows})
        return
    table([_short(r) for r in rows], title="online learning")


@app.command("enable")
@handle_errors
def enable(pairs: str = ReqPairsOpt, as_json: bool = JsonOpt) -> None:
    """Enable online updates (also resumes a paused pair and clears its streak)."""
    _set(pairs, True, as_json)


@app.command("disable")
@handle_errors
def disable(pairs: str = ReqPairsOpt, as_json: bool = JsonOpt) -> None:
    """Disable online updates."""
    _set(pairs, False, as_json)


@app.command("run")
@handle_errors
def run(pairs: str = ReqPairsOpt, as_json: bool = JsonOpt) -> None:
    """Request an online update now: the leading operator runs it on its next tick
    (enabled pairs only), then gates it and starts its rollout like any candidate."""
    import uuid

    from bqx.registry import Registry
    from bqx.universe import normalize_pairs

    st = _state()
    reg = Registry(settings())
    out = []
    for p in normalize_pairs(pairs):
        tid, _ = st.add_trigger(f"online:manual:{uuid.uuid4()}", p, "online",
                                reason="online update on demand",
                                parent_version=reg.production_version(p))  # fmt: skip
        note = "" if st.online_state(p)["enabled"] else " (disabled: will be skipped)"
        out.append({"trigger_id": tid, "pair": p, "status": "pending" + note})
    if as_json:
        print_json(out)
        return
    table(out, title="online update requested (the operator runs it)")
