"""The config groups of ``conf/`` as Markdown, read when the site is built (so the page cannot drift)."""

from __future__ import annotations

from pathlib import Path

import yaml

CONF = Path(__file__).resolve().parents[2] / "conf"


def _comment(text: str) -> str:
    """The file's leading comment lines (its description), joined."""
    lines = []
    for line in text.splitlines():
        if line.startswith("# @package"):
            continue
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def _keys(text: str) -> str:
    """Its top-level keys with their scalar values (``defaults`` and ``_partial_`` left out)."""
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        return ""
    shown = []
    for key, value in data.items():
        if key in ("defaults", "_partial_"):
            continue
        if isinstance(value, dict):
            shown.append(f"`{key}.*`")
        else:
            shown.append(f"`{key}: {value}`" if len(str(value)) < 60 else f"`{key}`")
    return ", ".join(shown)


def cell(text: str) -> str:
    """Text for a table cell: pipes escaped, and ``<`` / ``>`` outside code spans (they would be HTML), ``[`` / ``]`` too (links)."""
    parts = text.replace("|", "\\|").replace("\n", " ").split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;").replace("[", "\\[").replace("]", "\\]")
    return "`".join(parts)


def groups() -> list[Path]:
    """Every folder of conf/ that holds options (hydra/launcher and the like included)."""
    found = []
    for folder in sorted(p for p in CONF.rglob("*") if p.is_dir() and p.name != "__pycache__"):
        if any(folder.glob("*.yaml")) and folder.relative_to(CONF).parts[0] != "local":
            found.append(folder)
    return found


def markdown() -> str:
    out = []
    top = sorted(CONF.glob("*.yaml"))
    out.append("### Top-level files\n")
    out.append("| file | what it is |\n|---|---|")
    for f in top:
        out.append(f"| `conf/{f.name}` | {cell(_comment(f.read_text()))} |")
    for folder in groups():
        group = folder.relative_to(CONF).as_posix()
        out.append(f"\n### `{group}`\n")
        out.append(f"`python train.py {group}=<option>`\n")
        out.append("| option | description | keys |\n|---|---|---|")
        for f in sorted(folder.glob("*.yaml")):
            text = f.read_text()
            out.append(f"| `{f.stem}` | {cell(_comment(text))} | {cell(_keys(text))} |")
    return "\n".join(out)
