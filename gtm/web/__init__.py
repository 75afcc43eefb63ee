"""The approval inbox in the browser: `gtm inbox --web`.

A small Starlette app with server-rendered templates: `app` wires it, `security` lets in only
the reviewer holding the printed token, `pages` shows and decides drafts, `worker` applies
decisions in the background. It decides through the runner's `take_decision` /
`apply_decision`, under the same policy as `gtm approve`, so a click resumes the graph exactly
as the CLI does, and the ledger's claim makes a second decision (double click, second reviewer)
fail with "already decided".

Beside the inbox, `webhooks` receives Dux-Soup's posts and our emails' one-click unsubscribe
link; `duxsoup_posts` reads what a Dux-Soup post carries.
"""

from gtm.web.app import WebInbox, create_app, serve

__all__ = ["WebInbox", "create_app", "duxsoup_posts", "serve"]
