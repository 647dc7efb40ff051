"""HTML pages: typed blocks rendered by jinja2 templates (autoescape on) inside one shared layout.

Every HTML output of the project (evaluation report, scenarios report, comparison page, trading tearsheet) is a
``Page`` of ``Section``s of blocks, rendered by ``templates/page.html.j2`` which extends ``templates/layout.html.j2``
(title, subtitle, section navigation, the shared CSS, footer). All text is plain text: the templates escape it, so
data and user input may go anywhere. Rich text is a sequence of parts: ``str``, ``Strong``, ``Code``, ``Badge``.

Making a new page::

    from marketsynth.reports import Figure, MetricRow, MetricTable, Page, Paragraph, Section, Strong, Table
    from marketsynth.reports import figure_png, write_page

    page = Page("marketsynth tearsheet: sma-cross", [
        Section("Summary", [Table([["strategy", name], ["period", period]])]),
        Section("Equity", [Paragraph(["Equity in USDT; ", Strong("after fees"), "."]),
                           Figure(figure_png(fig), "equity.png")]),
        Section("Metrics", [MetricTable([MetricRow("Sharpe", ["1.2"], "good", "daily returns, 365 a year")],
                                        columns=["value"])]),
    ], subtitle="BTCUSDT 1h, 2021-01-01 → 2023-01-01")
    write_page("tearsheet.html", page, files={"trades.csv": csv_bytes})

``render_page(page)`` returns the HTML string; ``write_page`` writes it atomically with the figures' PNGs and any
side ``files`` (.png/.csv) in a ``<stem>_files/`` folder beside it, swapped in whole (``data.io.atomic_directory``).
Figures are also embedded (base64), so the page is one self-contained file. A page whose body is not a list of
sections adds a template extending ``layout.html.j2`` (override ``{% block content %}``) and passes ``template=``.
"""

from __future__ import annotations

import base64
import functools
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from marketsynth import __version__
from marketsynth.data.io import atomic_directory, atomic_path
from marketsynth.errors import ConfigError, DataError

VERDICTS = ("good", "fair", "poor", "n/a")
SIDE_SUFFIXES = (".png", ".csv")  # what a page's side folder may hold (anything else: the folder is not ours)


# ---- inline parts ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Strong:
    text: str
    kind: ClassVar[str] = "strong"


@dataclass(frozen=True)
class Code:
    text: str
    kind: ClassVar[str] = "code"


@dataclass(frozen=True)
class Badge:
    """A coloured verdict pill: ``verdict`` (good, fair, poor, n/a) picks the colour; ``text`` defaults to it."""

    verdict: str
    text: str | None = None
    kind: ClassVar[str] = "badge"

    @property
    def label(self) -> str:
        return self.verdict if self.text is None else str(self.text)

    @property
    def css(self) -> str:
        return self.verdict if self.verdict in ("good", "fair", "poor") else "na"


Inline = str | Strong | Code | Badge
Rich = Inline | Sequence[Inline]


def rich(value) -> tuple[Inline, ...]:
    """Rich text as a tuple of parts (a plain value becomes one string part)."""
    if isinstance(value, str | Strong | Code | Badge):
        return (value,)
    if isinstance(value, Sequence):
        return tuple(part if isinstance(part, str | Strong | Code | Badge) else str(part) for part in value)
    return ("" if value is None else str(value),)


# ---- blocks ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Paragraph:
    """A paragraph of rich text; ``style`` 'note' (small grey print) or 'lead' (slightly larger)."""

    parts: Rich
    style: str | None = None
    template: ClassVar[str] = "paragraph.html.j2"

    def __post_init__(self):
        object.__setattr__(self, "parts", rich(self.parts))
        if self.style not in (None, "note", "lead"):
            raise ValueError(f"paragraph style {self.style!r}: use None, 'note' or 'lead'")


@dataclass(frozen=True)
class Note(Paragraph):
    """Small grey print: legends, caveats."""

    style: str | None = "note"


@dataclass(frozen=True)
class Heading:
    """A sub-heading inside a section."""

    text: str
    template: ClassVar[str] = "heading.html.j2"


@dataclass(frozen=True)
class Bullets:
    """A bulleted list of rich-text items (``plain``: no bullet marks, for items that start with a badge)."""

    items: Sequence[Rich]
    plain: bool = False
    template: ClassVar[str] = "bullets.html.j2"

    def __post_init__(self):
        object.__setattr__(self, "items", tuple(rich(item) for item in self.items))


@dataclass(frozen=True)
class Table:
    """Rows of rich-text cells; ``style`` 'kv' (a grey first column: key-value rows) or 'wide' (full width)."""

    rows: Sequence[Sequence[Rich]]
    header: Sequence[str] | None = None
    style: str = "kv"
    template: ClassVar[str] = "table.html.j2"

    def __post_init__(self):
        object.__setattr__(self, "rows", tuple(tuple(rich(cell) for cell in row) for row in self.rows))
        object.__setattr__(self, "header", None if self.header is None else tuple(str(h) for h in self.header))
        if self.style not in ("kv", "wide"):
            raise ValueError(f"table style {self.style!r}: use 'kv' or 'wide'")


@dataclass(frozen=True)
class MetricRow:
    """One metric: its name (and a small hint under it), value cells, a verdict badge and what it means."""

    name: str
    values: Sequence[str]
    verdict: str
    explanation: str = ""
    hint: str = ""

    @property
    def badge(self) -> Badge:
        return Badge(self.verdict)


@dataclass(frozen=True)
class MetricTable:
    """Metric rows with verdict badges; a ``str`` among the rows starts a group (a shaded heading row)."""

    rows: Sequence[MetricRow | str]
    columns: Sequence[str] = ("real", "synthetic", "distance")  # headings of the value cells
    name_heading: str = "metric"
    explanation_heading: str = "what it means"
    template: ClassVar[str] = "metric_table.html.j2"

    @property
    def width(self) -> int:
        return len(self.columns) + 3


@dataclass(frozen=True)
class Figure:
    """A PNG (``figure_png``) embedded in the page and written as ``name`` (made file-safe) beside it."""

    png: bytes = field(repr=False)
    name: str
    caption: str | None = None
    template: ClassVar[str] = "figure.html.j2"


Block = Paragraph | Heading | Bullets | Table | MetricTable | Figure


@dataclass(frozen=True)
class Section:
    title: str
    blocks: Sequence[Block] = ()


@dataclass(frozen=True)
class Page:
    """A titled page of sections; ``subtitle`` is one line of provenance under the title (optional)."""

    title: str
    sections: Sequence[Section]
    subtitle: str | None = None


# ---- rendering ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _PlacedFigure:
    """A figure with its side-file name and data URI, as the template sees it."""

    figure: Figure
    file_name: str
    template: ClassVar[str] = "figure.html.j2"

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.figure.png).decode("ascii")


@dataclass(frozen=True)
class _PlacedSection:
    id: str
    title: str
    blocks: tuple


@functools.cache
def environment():
    """The one jinja2 environment: templates from this package, autoescape on, undefined names are errors."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(loader=PackageLoader("marketsynth.reports", "templates"), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def render_page(page: Page, *, folder: str | None = None, template: str = "page.html.j2") -> str:
    """The page's HTML. ``folder`` (the side folder's name) adds a link to each figure's file under its image."""
    sections, _ = _place(page, {})
    return _render(page, sections, folder, template)


def write_page(path: str | Path, page: Page, *, files: Mapping[str, bytes] | None = None,
               template: str = "page.html.j2") -> Path:
    """Write ``page`` to ``path`` (.html) and its figures plus ``files`` to ``<stem>_files/``; return ``path``.

    Both are written atomically (the folder is swapped in whole, then the page replaces the old one), so a failure
    leaves an earlier page intact. A folder of that name holding anything but .png/.csv files is not replaced.
    """
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"report {path}: use a file name ending in .html")
    if not path.parent.is_dir():
        raise DataError(f"cannot write report {path}: folder {path.parent} does not exist")
    folder = path.with_name(f"{path.stem}_files")
    if folder.exists() and (not folder.is_dir() or any(p.suffix.lower() not in SIDE_SUFFIXES
                                                       for p in folder.iterdir())):
        raise DataError(f"cannot write report files to {folder}: it exists and holds other files; "
                        f"move it or choose another report name")
    sections, side = _place(page, files or {})
    # rendered before any file is touched: a template error changes nothing
    text = _render(page, sections, folder.name if side else None, template)
    if side:
        with atomic_directory(folder) as tmp:
            for name, data in side.items():
                (tmp / name).write_bytes(data)
    elif folder.exists():
        shutil.rmtree(folder)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _render(page: Page, sections: list[_PlacedSection], folder: str | None, template: str) -> str:
    return environment().get_template(template).render(page=page, sections=sections, folder=folder,
                                                       version=__version__)


def _place(page: Page, files: Mapping[str, bytes]) -> tuple[list[_PlacedSection], dict[str, bytes]]:
    """Section ids and safe, unique side-file names (``a b.png`` -> ``a_b.png``, repeats get ``-2``)."""
    seen: set[str] = set()
    side: dict[str, bytes] = {}

    def claim(name: str, suffix: str) -> str:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(name)).stem).strip("._") or "figure"
        candidate, i = f"{stem}{suffix}", 2
        while candidate.lower() in seen:
            candidate, i = f"{stem}-{i}{suffix}", i + 1
        seen.add(candidate.lower())
        return candidate

    sections = []
    for i, section in enumerate(page.sections):
        blocks = []
        for block in section.blocks:
            if isinstance(block, Figure):
                block = _PlacedFigure(block, claim(block.name, ".png"))
                side[block.file_name] = block.figure.png
            blocks.append(block)
        slug = re.sub(r"[^a-z0-9]+", "-", str(section.title).lower()).strip("-")
        sections.append(_PlacedSection(f"s{i}-{slug}", str(section.title), tuple(blocks)))
    for name, data in files.items():
        suffix = Path(str(name)).suffix.lower()
        if suffix not in SIDE_SUFFIXES:
            raise ValueError(f"side file {name!r}: a page's folder holds only {', '.join(SIDE_SUFFIXES)} files")
        side[claim(name, suffix)] = bytes(data)
    return sections, side
