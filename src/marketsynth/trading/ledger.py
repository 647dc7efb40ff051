"""The one accounting core of the backtest engine: both execution paths feed it the same orders.

``Ledger`` keeps the account (wallet, one isolated-margin position) and is driven by ``order(bar, target)`` calls in
bar order plus one ``finish()``. Between orders it does not step bar by bar: it scans the bars the position is held
over with numpy for the first stop-loss, take-profit or liquidation hit, and charges funding from a running sum, so
its cost grows with the number of orders, not bars. The per-bar equity curve is rebuilt at the end from the
segments of constant position. See ``marketsynth.trading.engine`` for the conventions it implements and
``marketsynth.trading.costs`` for fees, funding and the liquidation price.
"""

from __future__ import annotations

import math

import numpy as np

from marketsynth.trading.costs import Costs, liquidation_price

WIPED_OUT = 1e-9  # equity at or below this fraction of the starting capital ends trading


class Ledger:
    def __init__(self, prices: dict[str, np.ndarray], funding_sum: np.ndarray | None, *, capital: float,
                 costs: Costs, leverage: float, fill: str, stop_loss: float | None, take_profit: float | None,
                 sizing: str):
        self.open, self.high, self.low, self.close = (prices[k] for k in ("open", "high", "low", "close"))
        self.n = len(self.close)
        self.funding = funding_sum  # F[i]: sum of open[k] * rate[k] over funding bars k <= i
        self.capital = float(capital)
        self.taker, self.slip = costs.taker_fee, costs.slippage
        self.mmr, self.liq_fee = costs.maintenance_margin, costs.liquidation_fee
        self.leverage = float(leverage)
        self.fill_open = fill == "open"
        self.stop_loss, self.take_profit = stop_loss, take_profit
        self.fraction = sizing == "fraction"
        # account
        self.wallet = self.capital
        self.q = 0.0  # signed units
        self.entry = 0.0  # average entry price
        self.margin = 0.0  # isolated margin of the position (wallet includes it)
        self.fref = 0.0  # funding sum the position has been charged up to
        self.liq = 0.0  # liquidation price at the last settlement
        self.stop = self.target_price = None
        self.pos_fees = self.pos_funding = 0.0  # not yet attributed to a trade record
        self.pos_bar = -1
        self.cursor = 0  # first bar whose intrabar range is not yet scanned for exits
        self.wiped_bar: int | None = None
        self.capped = 0
        # records
        self.segments: list[tuple[int, float, float, float, float]] = [(0, 0.0, 0.0, self.capital, 0.0)]
        self.trades: list[tuple] = []
        self.fills: list[tuple] = []

    # ------------------------------------------------------------------------------------------ driving

    def order(self, bar: int, target: float) -> None:
        """The strategy's target changed on the close of ``bar``: fill at the next open or at this close."""
        if self.wiped_bar is not None:
            return
        if self.fill_open:
            fill_bar = bar + 1
            if fill_bar >= self.n:
                return
            self.scan(fill_bar)
            if self.wiped_bar is not None:
                return
            self._settle(fill_bar)
            self._gap_at_open(fill_bar)
            if self.wiped_bar is not None:
                return
            self._trade_to(fill_bar, float(self.open[fill_bar]), target)
            self.cursor = fill_bar
        else:
            if bar >= self.n - 1:
                return
            self.scan(bar + 1)
            if self.wiped_bar is not None:
                return
            self._settle(bar)
            self._trade_to(bar, float(self.close[bar]), target)
            self.cursor = bar + 1

    def finish(self) -> None:
        """Scan to the last bar and close a position still open at its close (exit reason ``end``)."""
        self.scan(self.n)
        if self.q != 0.0:
            last = self.n - 1
            self._settle(last)
            self._close_part(last, float(self.close[last]), abs(self.q), "end", slipped=True)
            self._mark(last)

    # ------------------------------------------------------------------------------------------ exits

    def scan(self, stop: int) -> None:
        """Look for a stop-loss, take-profit or liquidation in bars ``cursor … stop − 1``; take the first."""
        start = self.cursor
        self.cursor = max(self.cursor, stop)
        if self.q == 0.0 or start >= stop:
            return
        long = self.q > 0
        if self.funding is not None:  # funding paid from the margin moves the liquidation price
            shift = (self.funding[start:stop] - self.fref) / ((1.0 - self.mmr) if long else (1.0 + self.mmr))
            liq = self.liq + shift
        else:
            liq = self.liq
        if long:
            adverse = liq if self.stop is None else np.maximum(liq, self.stop)
            can_hit = self.funding is not None or self.stop is not None or self.liq > 0
            hit = self.low[start:stop] <= adverse if can_hit else None
            if self.target_price is not None:
                up = self.high[start:stop] >= self.target_price
                hit = up if hit is None else hit | up
        else:
            adverse = liq if self.stop is None else np.minimum(liq, self.stop)
            hit = self.high[start:stop] >= adverse
            if self.target_price is not None:
                hit = hit | (self.low[start:stop] <= self.target_price)
        if hit is None:
            return
        j = int(hit.argmax())
        if not hit[j]:
            return
        bar = start + j
        liq_j = float(liq[j]) if isinstance(liq, np.ndarray) else float(liq)
        adverse_j = float(adverse[j]) if isinstance(adverse, np.ndarray) else float(adverse)
        self._settle(bar)
        self._exit_in_bar(bar, liq_j, adverse_j, long)
        self._mark(bar)

    def _gap_at_open(self, bar: int) -> None:
        """Before an order fills at ``bar``'s open: a gap through the liquidation price, the stop or the target
        at that open exits first (at the open), as the resting orders and the liquidation engine would."""
        if self.q == 0.0:
            return
        o, sign = float(self.open[bar]), (1.0 if self.q > 0 else -1.0)
        if sign * (o - self.liq) <= 0:
            self._liquidate(bar, o)
        elif self.stop is not None and sign * (o - self.stop) <= 0:
            self._close_part(bar, o, abs(self.q), "stop_loss", slipped=True)
        elif self.target_price is not None and sign * (o - self.target_price) >= 0:
            self._close_part(bar, o, abs(self.q), "take_profit", slipped=True)
        else:
            return
        self._mark(bar)

    def _exit_in_bar(self, bar: int, liq: float, adverse: float, long: bool) -> None:
        o, lo, hi = float(self.open[bar]), float(self.low[bar]), float(self.high[bar])
        sign = 1.0 if long else -1.0
        if (lo <= adverse) if long else (hi >= adverse):  # adverse side first: the stop beats the target
            if sign * (o - liq) <= 0:
                self._liquidate(bar, o)
            elif self.stop is not None and sign * (o - self.stop) <= 0:
                self._close_part(bar, o, abs(self.q), "stop_loss", slipped=True)
            elif self.stop is not None and sign * (self.stop - liq) > 0:
                self._close_part(bar, self.stop, abs(self.q), "stop_loss", slipped=True)
            else:
                self._liquidate(bar, liq)
        else:
            level = self.target_price
            price = o if sign * (o - level) >= 0 else level  # a gap through the target fills at the open
            self._close_part(bar, price, abs(self.q), "take_profit", slipped=True)

    def _liquidate(self, bar: int, price: float) -> None:
        """Close at ``price`` without slippage; liquidation fee on notional; loss capped at the position's margin."""
        q = self.q
        gross = q * (price - self.entry)
        fee = self.liq_fee * abs(q) * price
        equity_left = self.margin + gross - fee
        if equity_left < 0.0:  # the exchange absorbs the shortfall: the fee shrinks first, then the loss
            if fee + equity_left >= 0.0:
                fee += equity_left
            else:
                fee, gross = 0.0, -self.margin
            equity_left = 0.0
        self._record_close(bar, price, abs(q), gross, fee, "liquidation")
        self.wallet = self.wallet - self.margin + equity_left
        self._flat()
        if self.wallet <= WIPED_OUT * self.capital:
            self.wallet = max(self.wallet, 0.0)
            self.wiped_bar = bar

    # ------------------------------------------------------------------------------------------ orders

    def _settle(self, bar: int) -> None:
        """Charge funding up to and including ``bar`` (paid from the wallet and the position's margin)."""
        if self.funding is None:
            return
        level = float(self.funding[bar])
        if self.q != 0.0 and level != self.fref:
            paid = self.q * (level - self.fref)
            self.wallet -= paid
            self.margin -= paid
            self.pos_funding += paid
            self.liq = liquidation_price(self.entry, self.q, self.margin, self.mmr)
        self.fref = level

    def _trade_to(self, bar: int, price: float, target: float) -> None:
        q = self.q
        equity = self.wallet + q * (price - self.entry)
        wanted = target * equity * self.leverage / price if self.fraction else target
        if q != 0.0 and (wanted == 0.0 or (wanted > 0.0) != (q > 0.0)):
            self._close_part(bar, price, abs(q), "signal", slipped=True)
            q = 0.0
            if self.fraction:
                wanted = target * self.wallet * self.leverage / price
        if wanted == q:
            self._mark(bar)
            return
        if q == 0.0 or abs(wanted) > abs(q):
            self._increase(bar, price, wanted - q)
        else:
            self._close_part(bar, price, abs(q) - abs(wanted), "signal", slipped=True)
        self._mark(bar)

    def _increase(self, bar: int, price: float, dq: float) -> None:
        side = 1.0 if dq > 0 else -1.0
        fill = price * (1.0 + side * self.slip)
        notional = abs(dq) * fill
        fee = notional * self.taker
        need = notional / self.leverage + fee
        free = self.wallet - self.margin
        if need > free:
            scale = max(free, 0.0) / need
            if scale < 0.99 and not self.fraction:  # fraction targets are sized to fit by definition
                self.capped += 1
            dq, notional, fee = dq * scale, notional * scale, fee * scale
        if abs(dq) * fill <= WIPED_OUT * self.capital:
            return
        action = "open" if self.q == 0.0 else "add"
        if self.q == 0.0:
            self.entry, self.pos_bar = fill, bar
        else:
            self.entry = (self.q * self.entry + dq * fill) / (self.q + dq)
        self.q += dq
        self.wallet -= fee
        self.margin += notional / self.leverage
        self.pos_fees += fee
        self.liq = liquidation_price(self.entry, self.q, self.margin, self.mmr)
        self._levels()
        self.fills.append((bar, action, dq, fill, fee, self.q, "signal"))

    def _close_part(self, bar: int, price: float, amount: float, reason: str, *, slipped: bool) -> None:
        """Close ``amount`` units (all of them or part) at ``price`` moved by slippage, paying the taker fee."""
        side = 1.0 if self.q > 0 else -1.0
        fill = price * (1.0 - side * self.slip) if slipped else price
        fee = amount * fill * self.taker
        gross = side * amount * (fill - self.entry)
        share = amount / abs(self.q)
        self._record_close(bar, fill, amount, gross, fee, reason)
        self.wallet += gross - fee
        if share >= 1.0 - 1e-12:
            self._flat()
        else:
            self.margin *= 1.0 - share
            self.q -= side * amount
            self.liq = liquidation_price(self.entry, self.q, self.margin, self.mmr)
        if self.wallet <= WIPED_OUT * self.capital:
            self.wallet = max(self.wallet, 0.0)
            self.wiped_bar = bar

    def _record_close(self, bar: int, fill: float, amount: float, gross: float, fee: float, reason: str) -> None:
        share = min(1.0, amount / abs(self.q))
        entry_fees, funding = self.pos_fees * share, self.pos_funding * share
        self.pos_fees -= entry_fees
        self.pos_funding -= funding
        pnl = gross - fee - entry_fees - funding
        committed = amount * self.entry / self.leverage
        side = "long" if self.q > 0 else "short"
        self.trades.append((self.pos_bar, bar, side, amount, self.entry, fill, entry_fees + fee, funding, pnl,
                            pnl / committed if committed > 0 else math.nan, reason))
        action = "close" if share >= 1.0 - 1e-12 else "reduce"
        after = 0.0 if action == "close" else self.q - (amount if self.q > 0 else -amount)
        change = -amount if self.q > 0 else amount
        self.fills.append((bar, action, change, fill, fee, after, reason))

    def _flat(self) -> None:
        self.q = self.entry = self.margin = self.liq = 0.0
        self.stop = self.target_price = None
        self.pos_fees = self.pos_funding = 0.0
        self.pos_bar = -1

    def _levels(self) -> None:
        long = self.q > 0
        if self.stop_loss is not None:
            self.stop = self.entry * (1.0 - self.stop_loss if long else 1.0 + self.stop_loss)
        if self.take_profit is not None:
            self.target_price = self.entry * (1.0 + self.take_profit if long else 1.0 - self.take_profit)

    def _mark(self, bar: int) -> None:
        """The account state the closes from ``bar`` on are marked with (a later mark at the same bar wins)."""
        self.segments.append((bar, self.q, self.entry, self.wallet, self.fref))

    # ------------------------------------------------------------------------------------------ curves

    def curves(self) -> dict[str, np.ndarray]:
        """Per-bar ``cash`` (wallet), ``position`` and ``equity`` marked at each bar's close."""
        seg = np.array(self.segments, dtype="float64")
        starts = seg[:, 0].astype(np.int64)
        keep = np.r_[starts[1:] != starts[:-1], True]
        seg, starts = seg[keep], starts[keep]
        lengths = np.diff(np.r_[starts, self.n])
        q, entry, wallet = (np.repeat(seg[:, k], lengths) for k in (1, 2, 3))
        cash = wallet if self.funding is None else wallet - q * (self.funding - np.repeat(seg[:, 4], lengths))
        equity = cash + q * (self.close - entry)
        return {"cash": cash, "position": q, "equity": equity}
