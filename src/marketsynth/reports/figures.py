"""Matplotlib figures as PNG bytes for pages (``page.Figure``): one resolution and background for every report."""

from __future__ import annotations

import io

PNG_DPI = 110


def figure_png(fig) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it (a pyplot figure is released from pyplot too).

    The PNG carries no software/date metadata, so the same figure gives the same bytes. Bare
    ``matplotlib.figure.Figure`` objects (no pyplot state) are rendered without importing pyplot.
    """
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=PNG_DPI, metadata={"Software": None}, facecolor="white")
    finally:
        if getattr(fig.canvas, "manager", None) is not None:
            import matplotlib.pyplot as plt

            plt.close(fig)
    return buffer.getvalue()
