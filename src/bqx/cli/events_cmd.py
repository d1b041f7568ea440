"""``bqx events``: relay decisions and lifecycle events from the outbox to the broker."""

from __future__ import annotations

import contextlib

import typer

from bqx.cli._common import JsonOpt, console, handle_errors, print_json, settings
from bqx.errors import ConfigError

app = typer.Typer(help="Event stream: the state DB outbox -> Redis Streams (events.url).")


@app.command("relay")
@handle_errors
def relay(
    once: bool = typer.Option(False, "--once", help="Deliver what is pending and exit."),
    url: str | None = typer.Option(None, "--url", help="Broker URL (default: events.url)."),
    as_json: bool = JsonOpt,
) -> None:
    """Capture new decisions/promotions into the outbox and deliver them in order; events
    wait in the outbox while the broker is down."""
    from bqx.events import open_bus, relay_forever, relay_once
    from bqx.state import open_state

    s = settings()
    u = url or s.events.url
    if not u:
        raise ConfigError("no broker configured", hint="set events.url or pass --url")
    st, bus = open_state(s), open_bus(u)
    if once:
        res = relay_once(st, bus)
        if as_json:
            print_json(res)
        else:
            console.print(
                f"captured {res['captured']}, sent {res['sent']}, pending {res['pending']}"
                + (f" (broker: {res['broker_error']})" if res["broker_error"] else "")
            )
        return
    with contextlib.suppress(KeyboardInterrupt):
        relay_forever(st, bus, poll_s=s.events.poll_s)
