"""Report pages: jinja2 templates, the one page layout and the blocks every HTML output is made of.

See ``page`` for how a page is made (blocks, ``render_page``, ``write_page``). This is the lowest layer with
HTML in it: it imports only ``errors``, ``data.io`` (atomic files), jinja2 and matplotlib, so evaluation, risk,
trading and the facades can all build on it.
"""

from marketsynth.reports.figures import PNG_DPI, figure_png
from marketsynth.reports.page import (
    VERDICTS,
    Badge,
    Bullets,
    Code,
    Figure,
    Heading,
    MetricRow,
    MetricTable,
    Note,
    Page,
    Paragraph,
    Section,
    Strong,
    Table,
    render_page,
    write_page,
)

__all__ = ["PNG_DPI", "VERDICTS", "Badge", "Bullets", "Code", "Figure", "Heading", "MetricRow", "MetricTable", "Note",
           "Page", "Paragraph", "Section", "Strong", "Table", "figure_png", "render_page", "write_page"]
