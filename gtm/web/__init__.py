"""The approval inbox in the browser: `gtm inbox --web`.

A small Starlette app with server-rendered templates. It decides drafts through the same
`take_decision` / `apply_decision` as `gtm approve`, so a click resumes the graph exactly as the
CLI does, and the ledger's claim makes a second decision (double click, second reviewer) fail
with "already decided".
"""

from gtm.web.app import WebInbox, create_app, serve

__all__ = ["WebInbox", "create_app", "serve"]
