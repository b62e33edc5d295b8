"""Put an ``experiments/<name>/README.md`` (or RESULTS.md) on the results page, as it is in the repository.

Headings move down so they nest under the page's section; images are inlined; links to files of the
repository become their path in code (they are not pages of this site)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def include(path: str, shift: int = 2) -> str:
    file = ROOT / path
    folder = file.parent

    def link(m: re.Match) -> str:
        bang, text, target = m.groups()
        if target.startswith(("http://", "https://", "#")):
            return m.group(0)
        if bang and target.endswith(".png"):
            data = base64.b64encode((folder / target).read_bytes()).decode("ascii")
            return f"![{text}](data:image/png;base64,{data})"
        rel = (folder / target).resolve().relative_to(ROOT)
        return f"{text} (`{rel}`)"

    out, fenced = [], False
    for line in file.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("#"):
            line = "#" * shift + line
        out.append(line if fenced else LINK.sub(link, line))
    return "\n".join(out)
