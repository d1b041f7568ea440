"""``bqx keys``: create, list and revoke API keys of the prediction service.

Keys live hashed in the state database (``settings.resolved_state_url``); the printable
key is shown once, at creation. A running server notices a revocation within its
verification cache TTL (a few seconds), without restart.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import typer

from bqx.cli._common import JsonOpt, console, err_console, handle_errors, print_json, settings

if TYPE_CHECKING:
    from bqx.serving.auth import ApiKeys

app = typer.Typer(help="Manage API keys (stored hashed; roles reader < trader < admin).")

_WARNING = "Store this key now: it cannot be shown again (only a hash of it is kept)."


def _keys() -> tuple[ApiKeys, float]:
    from bqx.serving.auth import ApiKeys
    from bqx.state import open_state

    s = settings()
    return ApiKeys(open_state(s)), float(s.serve.rate_limit)


@app.command("create")
@handle_errors
def create(
    role: str = typer.Option(
        ..., "--role", "-r", help="reader (predict, read), trader (+ push bars), admin (all)."
    ),
    name: str | None = typer.Option(None, "--name", "-n", help="A label, e.g. who uses it."),
    rate: float | None = typer.Option(
        None, "--rate", help="Requests/second for this key (default: serve.rate_limit)."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Create a key and print it once."""
    from bqx.serving.auth import parse_role

    r = parse_role(role)
    keys, default_rate = _keys()
    key_id, key = keys.create_key(r, name=name, rate=rate)
    if as_json:
        print_json(
            {
                "key_id": key_id,
                "name": name,
                "role": r.value,
                "rate": rate,
                "effective_rate": rate if rate is not None else default_rate,
                "key": key,
                "warning": _WARNING,
            }
        )
        return
    rate_txt = f"{rate:g}/s" if rate is not None else f"default ({default_rate:g}/s)"
    err_console.print(
        f"Created key [bold]{key_id}[/bold] (role {r.value}, rate {rate_txt}"
        + (f", name {name!r}" if name else "")
        + ")"
    )
    # the key alone on stdout, unwrapped, so `KEY=$(bqx keys create ...)` works
    print(key)
    err_console.print(f"[yellow]{_WARNING}[/yellow]")


@app.command("list")
@handle_errors
def list_(
    show_revoked: bool = typer.Option(
        True, "--revoked/--active-only", help="Include revoked keys."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """List keys (ids, roles, rates, status; never secrets)."""
    keys, default_rate = _keys()
    rows = [k.as_dict() for k in keys.list_keys() if show_revoked or k.active]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("[dim]no API keys; create one with `bqx keys create --role reader`[/dim]")
        return
    from rich.table import Table

    t = Table(title="API keys", caption=f"default rate: {default_rate:g} req/s per key")
    t.add_column("key_id", no_wrap=True, min_width=12)  # never folded: users copy it
    t.add_column("role", no_wrap=True)
    t.add_column("rate", no_wrap=True)
    t.add_column("status", overflow="fold")
    t.add_column("created", overflow="fold")
    t.add_column("last used", overflow="fold")
    t.add_column("name", overflow="fold")
    for r in rows:
        t.add_row(
            r["key_id"],
            r["role"],
            f"{r['rate']:g}/s" if r["rate"] is not None else "default",
            "active" if r["revoked_at"] is None else f"revoked {_when(r['revoked_at'])}",
            _when(r["created_at"]),
            _when(r["last_used_at"]),
            r["name"] or "",
        )
    console.print(t)


def _when(v: datetime | None) -> str:
    return "" if v is None else f"{v:%Y-%m-%d %H:%M}"


@app.command("revoke")
@handle_errors
def revoke(key_id: str = typer.Argument(..., help="The key id (the part after bqx_).")) -> None:
    """Revoke a key. A running server stops accepting it within seconds."""
    from bqx.errors import BqxError

    kid = key_id.strip()
    if kid.startswith("bqx_") and kid.count("_") >= 2:  # a whole key was pasted
        kid = kid.split("_")[1]
    keys, _ = _keys()
    row = keys.state.get_api_key(kid)
    if row is None:
        raise BqxError(f"no API key with id {kid!r}", hint="see `bqx keys list`")
    if row["revoked_at"] is not None:
        console.print(
            f"Key [bold]{kid}[/bold] was already revoked at {row['revoked_at']:%Y-%m-%d %H:%M:%S} UTC."
        )
        return
    keys.revoke(kid)
    console.print(f"Revoked key [bold]{kid}[/bold].")
