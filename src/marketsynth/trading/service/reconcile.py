"""Start-up reconciliation: what the store believes against what the broker says.

1. Every order the store holds as submitted, partially filled or unknown — and every pending one, which may
   have been sent just before the process died — is looked up by its client order id. Found: its state (and a
   fill, once) is stored. Not found: a pending order stays pending (the loop sends it, with the same id, when it
   repeats its bar); a submitted one the exchange does not know is a mismatch.
2. The positions: per symbol, the sum of the markets' books against the broker's position.

A mismatch halts the service in reduce-only mode with a message that says what differs; it is never "fixed" by
trading on a belief that may be wrong. ``marketsynth trade resume`` clears the halt once a person has looked.
"""

from __future__ import annotations

import logging

from marketsynth.errors import ExchangeError
from marketsynth.trading.service.loop import TradingService

log = logging.getLogger(__name__)
TOLERANCE = 1e-9  # units; positions are compared after lot-size rounding on both sides


def reconcile(service: TradingService) -> list[str]:
    """Bring the store up to date with the broker; returns the mismatches found (the service is halted if any)."""
    problems: list[str] = []
    store, broker = service.store, service.broker
    with service.lock:
        for order in store.orders(status=("pending", "submitted", "partially_filled", "unknown")).to_dict("records"):
            try:
                state = broker.lookup(order["symbol"], order["client_id"])
            except ExchangeError as exc:
                problems.append(f"order {order['client_id']} could not be looked up ({exc})")
                continue
            if state is None:
                if order["status"] in ("submitted", "partially_filled"):
                    problems.append(f"order {order['client_id']} is {order['status']} in the store but the exchange "
                                    "has no such order")
                continue
            service.apply(order, state)
        if service.paper:
            return problems if not _halt(service, problems) else problems
        try:
            held = {s: p.quantity for s, p in broker.positions().items()}
        except ExchangeError as exc:
            problems.append(f"positions could not be read ({exc})")
            held = None
        if held is not None:
            believed: dict[str, float] = {}
            for m in service.markets:
                believed[m.symbol] = believed.get(m.symbol, 0.0) + float(service._book(m)["quantity"])
            for symbol in sorted(set(held) | set(believed)):
                a, b = believed.get(symbol, 0.0), held.get(symbol, 0.0)
                if abs(a - b) > TOLERANCE * max(1.0, abs(a), abs(b)):
                    problems.append(f"{symbol}: the store holds {a:+.8g} units but the exchange {b:+.8g}")
        _halt(service, problems)
    return problems


def _halt(service: TradingService, problems: list[str]) -> bool:
    if not problems:
        return False
    message = ("reconciliation mismatch: " + "; ".join(problems) + " — halted in reduce-only mode; check the "
               "account, then run 'marketsynth trade resume'")
    log.error(message)
    service.halt(message)
    return True
