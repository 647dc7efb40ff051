"""Metric values as short text, shared by the report page and the terminal table (``marketsynth evaluate``)."""

from __future__ import annotations

from marketsynth.evaluation.records import MetricRecord

_PERCENT_METRICS = ("coverage", "memorization", "candle validity", "TSTR", "discriminative score")
_PERCENT_DISTANCES = ("volatility (std", "tail index", "coverage", "predictive", "TSTR", "memorization",
                      "candle validity", "discriminative score")


def format_values(record: MetricRecord) -> tuple[str, str, str]:
    """(real, synthetic, distance) as short strings: percentages where the explanation speaks in them."""
    name = record.name

    def value(x: float | None) -> str:
        if x is None:
            return "—"
        if name.startswith("mean return"):
            return f"{x:+.4%}"
        if name.startswith("volatility (std"):
            return f"{x:.3%}"
        if name.startswith(_PERCENT_METRICS):
            return f"{x:.2%}" if name.startswith("candle validity") else f"{x:.1%}"
        return number(x)

    synthetic = value(record.synthetic)
    spread = record.details.get("std") if isinstance(record.details, dict) else None
    if spread is not None and record.synthetic is not None and len(record.details.get("runs", [])) > 1:
        synthetic += f" ± {value(spread).lstrip('+')}"
    if record.distance is None:
        distance = "—"
    elif name.startswith(_PERCENT_DISTANCES):
        distance = f"{record.distance:.1%}" if record.distance < 10 else f"{record.distance:.3g}×"
    else:
        distance = number(record.distance)
    return value(record.real), synthetic, distance


def number(x: float | None) -> str:
    """3 significant digits, thousands separators, scientific only for tiny or huge values."""
    if x is None:
        return "—"
    size = abs(x)
    if size == 0:
        return "0"
    if size >= 1e6 or size < 1e-4:
        return f"{x:.2e}"
    if size >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}" if size < 100 else f"{x:.1f}"
