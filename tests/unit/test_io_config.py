import json

import pandas as pd
import pytest

from marketsynth.config import load_settings
from marketsynth.data.io import read_bars_file, write_bars_file
from marketsynth.errors import ConfigError, DataError


def test_binance_export_round_trips_through_csv_and_parquet(btc_csv, tmp_path):
    bars = read_bars_file(btc_csv)
    assert len(bars) == 33364 and str(bars.time.dtype) == "datetime64[us, UTC]"
    for suffix in (".csv", ".parquet"):
        out = write_bars_file(bars.iloc[:500], tmp_path / f"x{suffix}")
        again = read_bars_file(out)
        pd.testing.assert_frame_equal(again, bars.iloc[:500].reset_index(drop=True))
    header = (tmp_path / "x.csv").read_text().splitlines()[:2]
    assert header[0] == "timestamp,open,high,low,close,volume"
    assert header[1].startswith("2019-09-08T17:00:00Z,")


def test_headerless_binance_and_bybit_style_files(tmp_path):
    (tmp_path / "b.csv").write_text("1609459200000,1,2,0.5,1.5,10,1609462799999,15,3,5,7,0\n"
                                    "1609462800000,1.5,2,1,1.2,5,1609466399999,6,2,1,1,0\n")
    assert len(read_bars_file(tmp_path / "b.csv")) == 2
    (tmp_path / "y.csv").write_text("startTime,open,high,low,close,volume,turnover\n1609459200000,1,2,0.5,1.5,10,15\n")
    assert read_bars_file(tmp_path / "y.csv").time.iloc[0] == pd.Timestamp("2021-01-01", tz="UTC")
    (tmp_path / "s.csv").write_text("Date,Open,High,Low,Close,Volume\n2021-01-01,1,2,0.5,1.5,10\n")
    assert read_bars_file(tmp_path / "s.csv").close.iloc[0] == 1.5


@pytest.mark.parametrize(("content", "message"), [
    ("", "unreadable CSV"),
    ("a,b,c\n1,2,3\n", "no time column"),
    ("time,open,high,low,close\n2021-01-01,1,2,0.5,1.5\n", "no 'volume' column"),
    ("time,open,high,low,close,volume\nnot-a-date,1,2,0.5,1.5,1\n", "unreadable timestamps"),
])
def test_malformed_files_get_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        read_bars_file(path)
    assert "\n" not in str(info.value)


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_bars_file(tmp_path / "nope.csv")
    (tmp_path / "x.xlsx").write_text("x")
    with pytest.raises(DataError, match="unknown file type"):
        read_bars_file(tmp_path / "x.xlsx")


def test_config_validation_names_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  timeframes: [1h, 2x]\n")
    with pytest.raises(ConfigError, match=r"data.timeframes: unknown interval '2x'"):
        load_settings(path)
    path.write_text("data:\n  exchang: bybit\n")
    with pytest.raises(ConfigError, match=r"data.exchang: unknown key"):
        load_settings(path)
    path.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(path)
    json_path = tmp_path / "c.json"
    json_path.write_text(json.dumps({"data": {"symbols": ["ethusdt"], "lookback_days": 10}}))
    settings = load_settings(json_path)
    assert settings.data.symbols == ["ETHUSDT"] and settings.data.lookback_days == 10
