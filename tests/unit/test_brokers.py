"""Broker interface pieces without a server: client order ids, lot-size rounding, signatures, credentials."""

from __future__ import annotations

import json
import logging
import os
import pickle
import re

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketsynth.errors import ConfigError, OrderRejected
from marketsynth.trading.brokers.base import CLIENT_ID_PATTERN, Instrument, OrderRequest, client_order_id
from marketsynth.trading.brokers.binance import binance_signature
from marketsynth.trading.brokers.bybit import bybit_signature
from marketsynth.trading.brokers.credentials import Credentials, load_credentials

SECRET = "s3cr3t-unit-4f9a1c77e2"

# ---------------------------------------------------------------- client order ids

strategies = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)
symbols = st.from_regex(r"[A-Z0-9]{2,12}", fullmatch=True)
bar_closes = st.integers(min_value=0, max_value=9_000_000_000_000)  # ms, to the year 2255
legs = st.one_of(st.integers(min_value=0, max_value=99_999_999), st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True))


@settings(max_examples=300, deadline=None)
@given(strategies, symbols, bar_closes, legs)
def test_client_order_id_is_short_valid_and_deterministic(strategy, symbol, close_ms, leg):
    cid = client_order_id(strategy, symbol, pd.Timestamp(close_ms, unit="ms", tz="UTC"), leg)
    assert CLIENT_ID_PATTERN.fullmatch(cid) and len(cid) <= 36
    assert re.fullmatch(r"[.A-Z:/a-z0-9_-]{1,36}", cid)  # Binance's own rule for newClientOrderId
    assert cid == client_order_id(strategy, symbol.lower(), pd.Timestamp(close_ms, unit="ms", tz="UTC"), leg)


@settings(max_examples=300, deadline=None)
@given(st.tuples(strategies, symbols, bar_closes, legs), st.tuples(strategies, symbols, bar_closes, legs))
def test_client_order_ids_differ_when_anything_differs(a, b):
    def key(t):
        return t[0], t[1], t[2], str(t[3])

    ids = [client_order_id(s, sym, pd.Timestamp(ms, unit="ms", tz="UTC"), leg) for s, sym, ms, leg in (a, b)]
    assert (ids[0] == ids[1]) == (key(a) == key(b))


def test_client_order_id_neighbours_differ():
    bar = pd.Timestamp("2024-03-01 12:00", tz="UTC")
    ids = {client_order_id("sma", "BTCUSDT", bar + pd.Timedelta(hours=h), leg) for h in range(48) for leg in range(3)}
    ids |= {client_order_id("sma2", "BTCUSDT", bar, 0), client_order_id("sma", "ETHUSDT", bar, 0)}
    assert len(ids) == 48 * 3 + 2


@pytest.mark.parametrize("leg", [-1, "exit-1", "toolongleg", True, 1.5])
def test_client_order_id_refuses_bad_legs(leg):
    with pytest.raises(ConfigError, match="leg"):
        client_order_id("sma", "BTCUSDT", "2024-01-01", leg)


def test_order_request_checks_its_fields():
    OrderRequest("ms-1", "BTCUSDT", "buy", 0.01)
    for kwargs, word in [({"client_id": "has space"}, "client order id"), ({"side": "long"}, "side"),
                         ({"quantity": 0}, "quantity"), ({"quantity": -1.0}, "quantity"), ({"symbol": "btcusdt"},
                                                                                           "symbol")]:
        fields = {"client_id": "ms-1", "symbol": "BTCUSDT", "side": "buy", "quantity": 0.01, **kwargs}
        with pytest.raises(ConfigError, match=word):
            OrderRequest(**fields)


# ---------------------------------------------------------------- lot sizes


def test_quantity_rounds_down_to_the_lot_step():
    rules = Instrument.from_text("BTCUSDT", "0.00100000", "0.001", "120", "0.10")
    assert rules.quantity_text(0.0109) == "0.01"
    assert rules.quantity_text(0.1 + 0.2) == "0.3"  # 0.30000000000000004 is 300 steps, not 299
    assert rules.quantity_text(0.0029999999999) == "0.003"
    assert rules.quantity_text(120) == "120"
    assert rules.price_text(26543.26) == "26543.3"
    with pytest.raises(OrderRejected, match="below the minimum order of 0.001"):
        rules.quantity_text(0.0009)
    with pytest.raises(OrderRejected, match="above the maximum market order of 120"):
        rules.quantity_text(120.5)
    whole = Instrument.from_text("DOGEUSDT", "1", "1", "1000000", "0.00001")
    assert whole.quantity_text(1234.9) == "1234"


# ---------------------------------------------------------------- signatures


def test_binance_signature_matches_the_published_test_vector():
    """Binance's USDⓈ-M "SIGNED Endpoint Examples for POST /fapi/v1/order - HMAC Keys"."""
    secret = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
    params = ("symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000"
              "&timestamp=1591702613943")
    assert binance_signature(secret, params) == "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"
    # Example 3: query string and body concatenated without '&' (the published text has a space before the time)
    mixed = ("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC" "quantity=1&price=9000&recvWindow=5000"
             "&timestamp= 1591702613943")
    assert binance_signature(secret, mixed) == "f9d0ae5e813ef6ccf15c2b5a434047a0181cb5a342b903b367ca6d27a66e36f2"


def test_bybit_signature_signs_timestamp_key_window_and_payload_in_that_order():
    import hashlib
    import hmac

    body = '{"category":"linear","symbol":"BTCUSDT"}'
    expected = hmac.new(b"secret", b"1658384314791key5000" + body.encode(), hashlib.sha256).hexdigest()
    assert bybit_signature("secret", 1658384314791, "key", 5000, body) == expected
    assert bybit_signature("secret", 1658384314791, "key", 5000, "category=linear") != expected


# ---------------------------------------------------------------- credentials


def test_credentials_from_the_environment():
    env = {"MARKETSYNTH_BYBIT_API_KEY": "abcd1234", "MARKETSYNTH_BYBIT_API_SECRET": SECRET}
    creds = load_credentials("bybit", environ=env)
    assert creds.api_key == "abcd1234" and creds.reveal_secret() == SECRET
    with pytest.raises(ConfigError, match="set MARKETSYNTH_BINANCE_API_KEY and MARKETSYNTH_BINANCE_API_SECRET"):
        load_credentials("binance", environ=env)
    with pytest.raises(ConfigError, match="MARKETSYNTH_BYBIT_API_SECRET"):
        load_credentials("bybit", environ={"MARKETSYNTH_BYBIT_API_KEY": "abcd1234"})


def test_credentials_never_show_the_secret(caplog):
    creds = Credentials("binance", "key-visible-1234", SECRET)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("test").debug("using %s and %r, %s", creds, creds, f"{creds}")
    for text in (repr(creds), str(creds), f"{creds!r}", caplog.text):
        assert SECRET not in text and "key-visible" not in text
    assert "...1234" in repr(creds) and "short" not in repr(Credentials("bybit", "short", SECRET))
    assert creds.redact(f"error sign! origin_string[123key-visible-12345000{SECRET}]") == \
        "error sign! origin_string[123***5000***]"
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(creds)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_secrets_file_must_be_owner_only(tmp_path, suffix):
    path = tmp_path / f"secrets{suffix}"
    entry = {"bybit": {"api_key": "k-1234", "api_secret": SECRET}}
    path.write_text(json.dumps(entry))  # JSON is YAML too
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError) as info:
        load_credentials("bybit", secrets_file=path)
    message = str(info.value)
    assert str(path) in message and "chmod 600" in message and "\n" not in message and SECRET not in message
    os.chmod(path, 0o600)
    creds = load_credentials("bybit", secrets_file=path)
    assert creds.reveal_secret() == SECRET and creds.source == str(path)
    with pytest.raises(ConfigError, match="no binance.api_key"):
        load_credentials("binance", secrets_file=path)


def test_unreadable_secrets_file_is_named_without_quoting_it(tmp_path):
    path = tmp_path / "secrets.json"
    path.write_text('{"bybit": {"api_key": "k", "api_secret": "' + SECRET + '"')  # truncated
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError) as info:
        load_credentials("bybit", secrets_file=path)
    assert "not valid JSON" in str(info.value) and SECRET not in str(info.value)
    with pytest.raises(ConfigError, match="cannot read secrets file"):
        load_credentials("bybit", secrets_file=tmp_path / "missing.json")
