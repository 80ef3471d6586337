"""``--json FILE`` of every zerodown command: ``-`` is standard output, and the words a
command prints for people then go to standard error."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO


def words_stream(json_target: str | None) -> TextIO:
    """Where a command's words go, given its ``--json`` target."""
    return sys.stderr if json_target == "-" else sys.stdout


def write_json(document: Any, target: str) -> None:
    """``document`` as indented JSON to ``target`` (a path, or ``-``)."""
    text = json.dumps(document, indent=2) + "\n"
    if target == "-":
        sys.stdout.write(text)
    else:
        Path(target).write_text(text)
