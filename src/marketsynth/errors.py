"""One error hierarchy. The CLI catches ``MarketSynthError`` once, prints its one-line message and exits 2.

Messages name the problem and the fix, e.g.
``Bybit does not list symbol 'BTCUSD' in category 'linear' (did you mean BTCUSDT?)``.
"""


import difflib
from collections.abc import Iterable


def did_you_mean(name: object, choices: Iterable[str], cutoff: float = 0.5) -> str:
    """``" (did you mean X?)"`` for the choice closest to ``name``, or ``""``: the one suggestion rule of every
    one-line error about an unknown name."""
    close = difflib.get_close_matches(str(name).strip().lower(), [str(c) for c in choices], n=1, cutoff=cutoff)
    if not close:  # spellings such as 1M or D are case-sensitive choices
        close = difflib.get_close_matches(str(name).strip(), [str(c) for c in choices], n=1, cutoff=cutoff)
    return f" (did you mean {close[0]}?)" if close else ""


class MarketSynthError(Exception):
    """Root of every error a user can cause or fix."""


class ConfigError(MarketSynthError):
    """A config file, option or argument is wrong."""


class DataError(MarketSynthError):
    """Input data is missing, unreadable or malformed."""


class ExchangeError(MarketSynthError):
    """The exchange refused a request for a reason retrying will not fix (unknown symbol, bad interval...)."""


class TransientExchangeError(ExchangeError):
    """A failure worth retrying: rate limit, 5xx, timeout, malformed body.

    ``retry_after`` is the number of seconds the exchange asked us to wait, when it said.
    """

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class ExchangeUnreachableError(ExchangeError):
    """The exchange could not be reached at all (DNS, refused connection, timeouts on every attempt).

    ``detail`` says what failed; ``hint`` what to do about it (the caller may replace it with a better one).
    """

    def __init__(self, detail: str, hint: str):
        super().__init__(f"{detail}; {hint}")
        self.detail, self.hint = detail, hint


class StoreError(MarketSynthError):
    """The store cannot be opened, read or written."""


class ModelError(MarketSynthError):
    """A model, checkpoint or generation request is invalid."""


class OrderRejected(ExchangeError):
    """The exchange refused an order for a reason resending will not fix: margin, reduce-only, quantity.

    ``code`` is the exchange's own error code (Bybit ``retCode``, Binance ``code``), None for a refusal made
    before sending (a quantity below the symbol's lot size).
    """

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


class OrderStateUnknown(ExchangeError):
    """An order may or may not be on the exchange, and even a lookup by its client order id cannot tell.

    Nothing may be sent for ``client_id`` again until a reconciliation has found out what happened to it.
    """

    def __init__(self, message: str, client_id: str):
        super().__init__(message)
        self.client_id = client_id
