"""The browser client's files (web/ at the repository root), served by the ingress."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import NotFoundError

WEB_DIR = Path(__file__).resolve().parents[2] / "web"  # the repository's web/
FILES = frozenset(
    {"index.html", "app.js", "mic-worklet.js", "style.css", "dashboard.html", "dashboard.js"}
)


def web_file(name: str) -> Path:
    """Only the client's own files: never a path the request made up."""
    if name not in FILES:
        raise NotFoundError(f"no such file: {name}")
    return WEB_DIR / name
