"""`gtm`: run campaigns and decide drafts from the terminal.

One module per command group: `campaign` (run, status), `imports` (the preview of a list
export), `review` (inbox and the decisions), `admin` (suppress, forget, eval, doctor), `loop`
(events, sync), `serve`, `escalations`, `flags` (red flags), `report` (the funnel against the
playbook's goals) and `lint` (score messages without research). Importing them registers their
commands on `app`.
"""

from __future__ import annotations

import sys

# Registration order is the order `gtm --help` lists the commands in.
from gtm.cli import common  # isort: skip
from gtm.cli import campaign, imports, review, admin, loop, serve  # isort: skip
from gtm.cli import escalations, flags, report, lint  # isort: skip
from gtm.cli import db  # isort: skip  # noqa: F401 - registers `gtm db`

__all__ = ["app", "main"]

app = common.app
_COMMAND_GROUPS = (campaign, imports, review, admin, loop, serve, escalations, flags, report, lint)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        common.err.print("interrupted: run the same command again to continue where it stopped")
        sys.exit(130)
