"""Put a matplotlib figure on a page: the PNG inline (a data URI), so the page needs no other file."""

from __future__ import annotations

import base64
import io


def figure_html(fig, alt: str, dpi: int = 90) -> str:
    """The figure as an ``<img>`` inside a ``<figure>`` (printed by a hidden line of a page's code block)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<figure markdown="0"><img class="spikelight-figure" alt="{alt}" src="data:image/png;base64,{data}"></figure>'


def png_html(path, alt: str) -> str:
    """A PNG a run wrote (e.g. ``<run>/plots/output_traces.png``) as an inline ``<img>``."""
    data = base64.b64encode(open(path, "rb").read()).decode("ascii")
    return f'<figure markdown="0"><img class="spikelight-figure" alt="{alt}" src="data:image/png;base64,{data}"></figure>'
