"""The report's "What gives the synthetic windows away" section, built from a ``diagnosis.Diagnosis``."""

from __future__ import annotations

from marketsynth.evaluation import plots
from marketsynth.evaluation.diagnosis import (
    ATOM_LABELS,
    CORRELATION_LABELS,
    FEATURE_LABELS,
    NOTICEABLE,
    STATISTICS,
    Diagnosis,
)
from marketsynth.evaluation.formatting import number
from marketsynth.reports import Badge, Bullets, Figure, Heading, Note, Paragraph, Section, Strong, Table, figure_png

TITLE = "What gives the synthetic windows away"


def diagnosis_section(d: Diagnosis) -> Section:
    """Ranked findings, then the tables behind them (discriminators, atoms, marginals, correlations) and the ACFs."""
    blocks: list = [Paragraph(
        "Each property of the windows on its own, real against synthetic, ranked by how noticeable the difference "
        "is (the strongest give-away first). A badge grades each difference against the size that starts to be "
        "noticeable for its kind of number (module marketsynth.evaluation.diagnosis lists them): good below it, "
        "fair up to three times it, poor beyond.")]
    blocks += _findings(d)
    blocks += [Heading("Discriminators, one feature at a time"), Paragraph(
        ["The evaluation's discriminator (a small GRU; 0 = it cannot tell the sets apart, 0.5 = it always can) "
         "trained on one feature at a time, then on all features with each window's bars shuffled in time. ",
         Strong("If the shuffled score is as high as the score in order"), ", single bars give the windows away "
         "(their distribution or how a bar's features go together); ", Strong("if it drops"), ", the give-away is "
         "how bars follow each other."]), Table(_discriminator_rows(d), ["features seen", "score"], style="wide"),
               Note(f"{d.n_classified:,} windows per set, {d.repeats} run(s) each, protocol {d.protocol}, seed "
                    f"{d.seed}; the diagnosis took {d.seconds:.0f} s.")]
    blocks += [Heading("Exact atoms"), Paragraph(
        "Real exchanges print exact values often: the next bar opens at the previous close, a bar has no wick. A "
        "continuous generator almost never hits an exact value, which a classifier can see."),
               Table([[ATOM_LABELS[k], f"{v['real']:.1%}", f"{v['synthetic']:.1%}"] for k, v in d.atoms.items()],
                     ["share of bars", "real", "synthetic"], style="wide")]
    level = d.volume_level
    blocks += [Heading("Marginals"), Paragraph(
        "Per feature the mean, standard deviation and 1% / 99% quantiles as real → synthetic, with the difference "
        "in standard deviations of the real feature. Features are log ratios (gap: open over previous close, "
        "return: close over previous close, wicks: high over the body's top and the body's bottom over low) and "
        "volume is log(1 + volume) minus its window's mean."),
               Table(_marginal_rows(d), ["feature", *STATISTICS.values()], style="wide"),
               Paragraph(f"The volume level the relative feature hides: mean log(1 + volume) of a window "
                         f"{level['real']:.3g} real vs {level['synthetic']:.3g} synthetic "
                         f"({level['difference']:+.2f} std of the real windows' levels).")]
    blocks += [Heading("Correlations within bars"),
               Table([[f"corr({CORRELATION_LABELS[k][0]}, {CORRELATION_LABELS[k][1]})", _corr(v["real"]),
                       _corr(v["synthetic"])] for k, v in d.correlations.items()],
                     ["within a bar", "real", "synthetic"], style="wide")]
    blocks += [Heading("Over time: autocorrelation and the daily cycle"), Paragraph(
        "How |returns| and relative volume relate to themselves some bars later, inside each window (bars 2 to "
        f"{d.seq_len}). For hourly bars the daily cycle shows here too: the volume curve dips near lag 12 and "
        "rises toward 24."), *_daily(d)]
    blocks += [Note(note) for note in d.notes]
    blocks.append(Figure(figure_png(plots.diagnosis_curves(d.acf, d.daily)), "diagnosis.png"))
    return Section(TITLE, blocks)


def _findings(d: Diagnosis) -> list:
    noticeable = [f for f in d.findings if f.verdict != "good"]
    rest = [f for f in d.findings if f.verdict == "good"]
    out: list = [Heading("Ranked findings")]
    if noticeable:
        out.append(Bullets([[Badge(f.verdict), " ", Strong(f.topic), f": {f.text}"] for f in noticeable], plain=True))
    else:
        out.append(Paragraph("No property differs noticeably: every difference below is within its limit."))
    if rest:
        topics = sorted({f.topic for f in rest}, key=list(NOTICEABLE).index)
        out.append(Paragraph([Badge("good"), f" {len(rest)} more within their limits ({', '.join(topics)}); "
                                             "the tables below show them all."]))
    return out


def _discriminator_rows(d: Diagnosis) -> list[list[str]]:
    def score(result: dict) -> str:
        spread = f" ± {result['std']:.3f}" if len(result.get("runs", [])) > 1 else ""
        return f"{result['mean']:.3f}{spread}"

    rows = [[f"{FEATURE_LABELS[name]} alone", score(result)] for name, result in d.discriminators.items()]
    return rows + [["all features, bars in order", score(d.time_order["in order"])],
                   ["all features, bars shuffled in time", score(d.time_order["shuffled"])]]


def _marginal_rows(d: Diagnosis) -> list[list[str]]:
    return [[FEATURE_LABELS[name], *(f"{number(s[k]['real'])} → {number(s[k]['synthetic'])} "
                                     f"({s[k]['difference']:+.2f})" for k in STATISTICS)]
            for name, s in d.marginals.items()]


def _daily(d: Diagnosis) -> list:
    daily = d.daily
    if daily["real"] is None or daily["synthetic"] is None:
        return [Paragraph(f"The daily cycle is {daily['note']}.")]
    rows = [[label, _corr(daily["correlation"].get(key))] for key, label in (("volume", "mean log(1 + volume)"),
                                                                             ("abs_ret", "mean |return|"))]
    return [Paragraph(f"Profiles over the day ({daily['bars_per_day']} bars a day): the correlation of the real and "
                      "synthetic profile (1 = the same shape)."),
            Table(rows, ["by position in the day", "correlation"], style="wide")]


def _corr(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f}"
