"""The trading service's tables, shared by both store backends (a mixin of ``Store``).

- ``model_predictions``: one row per strategy decision: ``id``, ``market`` (``SYMBOL:interval``), ``strategy``,
  ``symbol``, ``timeframe``, ``decided_at`` (the close of the input bar, ms), ``bar_time`` (the input bar's open,
  ms), ``target``, ``confidence``, ``recorded_at``.
- ``orders``: keyed by ``client_id``; ``status`` one of ``ORDER_STATUSES`` (pending → submitted → filled, or
  partially_filled, cancelled, rejected, unknown), ``exchange_id``, ``side``, ``quantity``, ``reduce_only``,
  ``prediction_id``, ``market``, ``reason`` (signal, stop_loss, take_profit, risk, flatten), fills so far,
  ``created_at``/``updated_at`` (ms), a ``note`` (why it was rejected or cancelled) and the ``target`` it serves.
- ``fills``: one row per order that filled (market orders fill once, in full): quantity, price, fee, time.
- ``positions``: one row per market: quantity (signed base units), entry price, equity of the market's book,
  realised P&L and fees, updated at.
- ``service_state``: key → JSON text (halted flag and reason, high-water mark, daily start equity, last processed
  bar per market, cooldowns...).

Times are integer milliseconds since the epoch (UTC) so the same SQL runs on DuckDB and PostgreSQL; statements
are written with ``?`` placeholders and each backend runs a list of them in one transaction
(``_trading_write``). ``record_prediction`` stores a prediction and its pending orders in ONE transaction, before
anything is sent; storing the same prediction again changes nothing (an order already past pending keeps its
status), so a restarted service can repeat the step safely.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

TRADING_ORDER_STATUSES = ("pending", "submitted", "filled", "partially_filled", "cancelled", "rejected", "unknown")
OPEN_ORDER_STATUSES = ("pending", "submitted", "partially_filled", "unknown")

TRADING_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS model_predictions (
        id VARCHAR PRIMARY KEY, market VARCHAR NOT NULL, strategy VARCHAR NOT NULL, symbol VARCHAR NOT NULL,
        timeframe VARCHAR NOT NULL, decided_at BIGINT NOT NULL, bar_time BIGINT NOT NULL,
        target DOUBLE PRECISION NOT NULL, confidence DOUBLE PRECISION, recorded_at BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS orders (
        client_id VARCHAR PRIMARY KEY, prediction_id VARCHAR, market VARCHAR NOT NULL, symbol VARCHAR NOT NULL,
        side VARCHAR NOT NULL, quantity DOUBLE PRECISION NOT NULL, reduce_only BOOLEAN NOT NULL,
        status VARCHAR NOT NULL, reason VARCHAR NOT NULL, exchange_id VARCHAR,
        filled_quantity DOUBLE PRECISION NOT NULL DEFAULT 0, average_price DOUBLE PRECISION,
        fee DOUBLE PRECISION, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, note VARCHAR,
        target DOUBLE PRECISION)""",
    """CREATE TABLE IF NOT EXISTS fills (
        client_id VARCHAR PRIMARY KEY, market VARCHAR NOT NULL, symbol VARCHAR NOT NULL, side VARCHAR NOT NULL,
        quantity DOUBLE PRECISION NOT NULL, price DOUBLE PRECISION NOT NULL, fee DOUBLE PRECISION NOT NULL,
        time BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS positions (
        market VARCHAR PRIMARY KEY, symbol VARCHAR NOT NULL, quantity DOUBLE PRECISION NOT NULL,
        entry_price DOUBLE PRECISION NOT NULL, equity DOUBLE PRECISION NOT NULL,
        realised_pnl DOUBLE PRECISION NOT NULL, fees DOUBLE PRECISION NOT NULL, updated_at BIGINT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS service_state (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
]
TRADING_TABLES = ("model_predictions", "orders", "fills", "positions", "service_state")

PREDICTION_COLUMNS = ["id", "market", "strategy", "symbol", "timeframe", "decided_at", "bar_time", "target",
                      "confidence", "recorded_at"]
ORDER_COLUMNS = ["client_id", "prediction_id", "market", "symbol", "side", "quantity", "reduce_only", "status",
                 "reason", "exchange_id", "filled_quantity", "average_price", "fee", "created_at", "updated_at",
                 "note", "target"]
FILL_COLUMNS = ["client_id", "market", "symbol", "side", "quantity", "price", "fee", "time"]
POSITION_COLUMNS = ["market", "symbol", "quantity", "entry_price", "equity", "realised_pnl", "fees", "updated_at"]
_ORDER_UPDATES = ("status", "exchange_id", "filled_quantity", "average_price", "fee", "updated_at", "note")


def _insert(table: str, columns: list[str], *, key: str, update: tuple[str, ...] = ()) -> str:
    action = (f"DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in update)}" if update else "DO NOTHING")
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
            f"ON CONFLICT ({key}) {action}")


def _row(record: dict[str, Any], columns: list[str]) -> list:
    values = []
    for column in columns:
        value = record.get(column)
        if isinstance(value, float) and math.isnan(value):
            value = None
        values.append(value)
    return values


class TradingTables:
    """What the trading service keeps in the store. Backends provide ``_trading_write(statements)`` (a list of
    ``(sql, params)`` run in one transaction) and ``_trading_rows(sql, params)``; ``?`` is the placeholder."""

    # ---- predictions and orders --------------------------------------------------------------------------
    def record_prediction(self, prediction: dict[str, Any], orders: list[dict[str, Any]] = (), *,
                          positions: list[dict[str, Any]] = (), state: dict[str, Any] | None = None) -> None:
        """Store a prediction and its pending orders in one transaction (nothing already stored changes); a bar
        without orders may carry the market's ``positions`` and ``state`` keys in the same transaction."""
        statements = [(_insert("model_predictions", PREDICTION_COLUMNS, key="id"),
                       _row(prediction, PREDICTION_COLUMNS))]
        statements += self._position_statements(list(positions)) + self._state_statements(state or {})
        for order in orders:
            row = {"status": "pending", "filled_quantity": 0.0, "prediction_id": prediction["id"],
                   "updated_at": order.get("created_at"), **order}
            statements.append((_insert("orders", ORDER_COLUMNS, key="client_id"), _row(row, ORDER_COLUMNS)))
        with self._lock:
            self._trading_write(statements)

    def record_predictions(self, predictions: list[dict[str, Any]], *, positions: list[dict[str, Any]] = (),
                           state: dict[str, Any] | None = None) -> None:
        """Store predictions that led to no order, with positions and state keys, in one transaction."""
        sql = _insert("model_predictions", PREDICTION_COLUMNS, key="id")
        statements = [(sql, _row(p, PREDICTION_COLUMNS)) for p in predictions]
        statements += self._position_statements(list(positions)) + self._state_statements(state or {})
        if statements:
            with self._lock:
                self._trading_write(statements)

    def add_orders(self, orders: list[dict[str, Any]]) -> None:
        """Store pending orders that serve no prediction (a risk control's exit), one transaction."""
        statements = [(_insert("orders", ORDER_COLUMNS, key="client_id"),
                       _row({"status": "pending", "filled_quantity": 0.0, "updated_at": o.get("created_at"), **o},
                            ORDER_COLUMNS)) for o in orders]
        if statements:
            with self._lock:
                self._trading_write(statements)

    def update_order(self, client_id: str, *, fill: dict[str, Any] | None = None,
                     position: dict[str, Any] | None = None, state: dict[str, Any] | None = None,
                     **fields) -> None:
        """Change an order's status and exchange details; with ``fill`` also record its fill, with ``position``
        the market's position after it, with ``state`` service-state keys: all in one transaction."""
        unknown = set(fields) - set(_ORDER_UPDATES)
        if unknown:
            raise ValueError(f"cannot update order column(s) {sorted(unknown)}")
        statements = []
        if fields:
            sets = ", ".join(f"{k} = ?" for k in fields)
            values = [None if isinstance(v, float) and math.isnan(v) else v for v in fields.values()]
            statements.append((f"UPDATE orders SET {sets} WHERE client_id = ?", [*values, client_id]))
        if fill is not None:
            statements.append((_insert("fills", FILL_COLUMNS, key="client_id"),
                               _row({"client_id": client_id, **fill}, FILL_COLUMNS)))
        statements += self._position_statements([position] if position else [])
        statements += self._state_statements(state or {})
        with self._lock:
            self._trading_write(statements)

    def orders(self, status: str | tuple[str, ...] | None = None, market: str | None = None) -> pd.DataFrame:
        """Orders (all, or those with ``status``), oldest first."""
        sql, params = f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders", []
        filters = []
        if status is not None:
            statuses = (status,) if isinstance(status, str) else tuple(status)
            filters.append(f"status IN ({', '.join('?' * len(statuses))})")
            params += list(statuses)
        if market is not None:
            filters.append("market = ?")
            params.append(market)
        if filters:
            sql += " WHERE " + " AND ".join(filters)
        frame = self._trading_frame(sql + " ORDER BY created_at, client_id", params, ORDER_COLUMNS, "orders")
        frame["reduce_only"] = frame["reduce_only"].astype(bool)
        return frame

    def order(self, client_id: str) -> dict[str, Any] | None:
        frame = self._trading_frame(f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders WHERE client_id = ?",
                                    [client_id], ORDER_COLUMNS, "orders")
        return None if frame.empty else frame.iloc[0].to_dict()

    def predictions(self, market: str | None = None) -> pd.DataFrame:
        sql, params = f"SELECT {', '.join(PREDICTION_COLUMNS)} FROM model_predictions", []
        if market is not None:
            sql, params = sql + " WHERE market = ?", [market]
        return self._trading_frame(sql + " ORDER BY decided_at, id", params, PREDICTION_COLUMNS, "model_predictions")

    def fills(self) -> pd.DataFrame:
        return self._trading_frame(f"SELECT {', '.join(FILL_COLUMNS)} FROM fills ORDER BY time, client_id", [],
                                   FILL_COLUMNS, "fills")

    # ---- positions and state --------------------------------------------------------------------------------
    def set_positions(self, positions: list[dict[str, Any]], state: dict[str, Any] | None = None) -> None:
        """Upsert market positions (and service-state keys) in one transaction."""
        statements = self._position_statements(positions) + self._state_statements(state or {})
        if statements:
            with self._lock:
                self._trading_write(statements)

    def positions(self) -> pd.DataFrame:
        return self._trading_frame(f"SELECT {', '.join(POSITION_COLUMNS)} FROM positions ORDER BY market", [],
                                   POSITION_COLUMNS, "positions")

    def set_state(self, values: dict[str, Any]) -> None:
        """Set service-state keys (JSON values) in one transaction."""
        statements = self._state_statements(values)
        if statements:
            with self._lock:
                self._trading_write(statements)

    def service_state(self) -> dict[str, Any]:
        """Every service-state key with its (JSON-decoded) value; {} when the service never ran."""
        if not self._has_trading_tables():
            return {}
        with self._lock:
            rows = self._trading_rows("SELECT key, value FROM service_state", [])
        return {key: json.loads(value) for key, value in rows}

    # ---- helpers --------------------------------------------------------------------------------------------
    def _position_statements(self, positions: list[dict[str, Any]]) -> list[tuple[str, list]]:
        sql = _insert("positions", POSITION_COLUMNS, key="market", update=tuple(POSITION_COLUMNS[1:]))
        return [(sql, _row(p, POSITION_COLUMNS)) for p in positions]

    @staticmethod
    def _state_statements(values: dict[str, Any]) -> list[tuple[str, list]]:
        sql = _insert("service_state", ["key", "value"], key="key", update=("value",))
        return [(sql, [key, json.dumps(value, sort_keys=True, allow_nan=False)]) for key, value in values.items()]

    def _trading_frame(self, sql: str, params: list, columns: list[str], table: str) -> pd.DataFrame:
        if not self._has_trading_tables():
            return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
        with self._lock:
            rows = self._trading_rows(sql, params)
        return pd.DataFrame.from_records(list(rows), columns=columns)

    def _has_trading_tables(self) -> bool:  # a read-only open of a store made before the service existed
        return True

    def _trading_write(self, statements: list[tuple[str, list]]) -> None:
        raise NotImplementedError

    def _trading_rows(self, sql: str, params: list) -> list[tuple]:
        raise NotImplementedError
