import pandas as pd

from marketsynth.data.store import find_gaps
from marketsynth.data.validate import check_series, count_violations

T = pd.Timestamp


def frame(rows):
    return pd.DataFrame(rows, columns=["time", "open", "high", "low", "close", "volume"])


def test_violations_by_rule():
    bars = frame([
        [T("2021-01-01 00:00", tz="UTC"), 10, 12, 9, 11, 1],
        [T("2021-01-01 01:00", tz="UTC"), 10, 10.5, 9, 11, 1],  # high below close
        [T("2021-01-01 02:00", tz="UTC"), 10, 12, 10.5, 11, 1],  # low above open
        [T("2021-01-01 03:00", tz="UTC"), 0, 12, 0, 11, 1],  # non-positive
        [T("2021-01-01 04:00", tz="UTC"), 10, 12, 9, 11, -1],  # negative volume
    ])
    v = count_violations(bars)
    assert (v.high_below_body, v.low_above_body, v.nonpositive_price, v.negative_volume) == (1, 1, 1, 1)


def test_check_series_counts_duplicates_and_gaps():
    times = [T("2021-01-01 00:00", tz="UTC"), T("2021-01-01 01:00", tz="UTC"), T("2021-01-01 01:00", tz="UTC"),
             T("2021-01-01 05:00", tz="UTC"), T("2021-01-01 07:00", tz="UTC")]
    bars = frame([[t, 1, 2, 0.5, 1.5, 1] for t in times])
    report = check_series(bars, "1h")
    assert report.rows == 5 and report.duplicates == 1
    assert report.gaps == 2 and report.gap_bars == 4 and report.largest_gap_bars == 3
    known = [(T("2021-01-01 02:00", tz="UTC"), T("2021-01-01 05:00", tz="UTC"))]
    with_known = check_series(bars, "1h", known)
    assert with_known.gaps == 1 and with_known.known_gap_bars == 3


def test_find_gaps_with_explicit_range():
    times = pd.DatetimeIndex([T("2021-01-01 02:00", tz="UTC"), T("2021-01-01 03:00", tz="UTC")])
    gaps = find_gaps(times, "1h", T("2021-01-01", tz="UTC"), T("2021-01-01 06:00", tz="UTC"))
    assert [(g.start.hour, g.end.hour, g.bars) for g in gaps] == [(0, 2, 2), (4, 6, 2)]
    assert find_gaps(pd.DatetimeIndex([], tz="UTC"), "1h") == []
