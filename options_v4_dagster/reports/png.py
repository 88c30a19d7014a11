"""Static PNG charts for the Dagster UI: matplotlib (Agg, no display) rendered to bytes and
embedded in markdown as a ``data:image/png;base64`` image, so the chart shows on the asset page
without a file the browser would have to reach."""

from __future__ import annotations

import base64
import io

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DPI = 72  # with the figure sizes used here, about 500 x 270 px and 20-45 kB per chart


def figure(width: float = 7.5, height: float = 4.0):
    """A new matplotlib figure on the Agg backend (never a GUI backend, safe in a Dagster run)."""
    from matplotlib.figure import Figure  # the object API: no pyplot global state, no backend switch

    return Figure(figsize=(width, height), dpi=DPI)


def to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def markdown_image(title: str, png: bytes) -> str:
    """``![title](data:image/png;base64,...)``; brackets in the title are dropped (they end the alt text)."""
    alt = title.replace("[", "(").replace("]", ")")
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
