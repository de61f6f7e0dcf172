"""A fair share of the page's queue: each visitor may have only a few events waiting or running at once.

The queue is bounded for the whole page (`app.ui.queue_size()`), so without a share per visitor one client
keeping 48 generations pending filled it, and every other visitor's click was refused as "busy". This ASGI
middleware looks at each request to join the queue (the page's and `gradio_client`'s `/queue/join`, and the
plain HTTP `/call/<endpoint>`) before Gradio admits it, and refuses it with HTTP 429 and a sentence saying why
when its visitor already has `pending_per_visitor()` events in the queue. A visitor is a browser page or a
`gradio_client` client (Gradio's session hash); a request that names no session counts against its address.

What it bounds is a greedy page or script; one that makes up a new session (or forwarded address) for every
request is bounded only by the page's queue bound, as before.
"""

from __future__ import annotations

import json
from collections import Counter

from app.housekeeping import whole_number_setting

# Waiting or running events per visitor. A page rarely has more than a few in flight (picking a model starts
# three small ones, and a generation may stream while a view runs); 8 leaves room for that, while it takes six
# greedy visitors together to fill the default queue of 48.
PENDING_PER_VISITOR = 8
REFUSED_STATUS = 429  # Too Many Requests: the page shows the detail in its error toast


def pending_per_visitor() -> int:
    """PLAYGROUND_PENDING_PER_VISITOR if set (tests use a small one), else PENDING_PER_VISITOR."""
    return whole_number_setting("PLAYGROUND_PENDING_PER_VISITOR", PENDING_PER_VISITOR)


def refusal(limit: int) -> str:
    requests = "1 request" if limit == 1 else f"{limit} requests"
    return (f"You already have {requests} waiting or running, the most one visitor may have at once, so that "
            "everyone gets a turn. Wait for one to finish (or press Stop), then try again.")


def _address(headers, client) -> str:
    # Behind a proxy (a Space) every connection comes from the proxy; the visitor is the first forwarded address.
    forwarded = headers.get("x-forwarded-for", "")
    return forwarded.split(",")[0].strip() or (client[0] if client else "")


def _joins_the_queue(scope) -> bool:
    path = scope.get("path", "")
    return scope["type"] == "http" and scope.get("method") == "POST" and (
        path.endswith("/queue/join") or "/call/" in path)


class FairQueue:
    """ASGI middleware (add it with Starlette's `Middleware(FairQueue)`) that caps each visitor's queued events."""

    def __init__(self, app, limit: int | None = None):
        self.app = app
        self.limit = limit or pending_per_visitor()
        # Requests passed on to Gradio but not yet answered: a burst of joins from one visitor must not all slip
        # through before the first is in the queue. While Gradio answers one it counts twice: slightly strict.
        self.admitting: Counter[str] = Counter()

    async def __call__(self, scope, receive, send):
        if not _joins_the_queue(scope):
            await self.app(scope, receive, send)
            return
        messages, body = [], b""
        while True:  # the join request is small JSON; it is read here and handed on unchanged
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        visitor = self._visitor(scope, body)
        if self._pending(scope, visitor) + self.admitting[visitor] >= self.limit:
            await self._refuse(send)
            return

        async def replay():
            return messages.pop(0) if messages else await receive()

        self.admitting[visitor] += 1
        try:
            await self.app(scope, replay, send)
        finally:
            self.admitting[visitor] -= 1
            if not self.admitting[visitor]:
                del self.admitting[visitor]

    @staticmethod
    def _visitor(scope, body: bytes) -> str:
        try:
            session = json.loads(body).get("session_hash")
        except (ValueError, AttributeError):
            session = None
        if isinstance(session, str) and session:
            return "session:" + session
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        return "address:" + _address(headers, scope.get("client"))

    @staticmethod
    def _pending(scope, visitor: str) -> int:
        """The visitor's events that Gradio holds, waiting or running (it drops each when it ends or is cancelled)."""
        blocks = scope["app"].get_blocks()  # Starlette puts the application in the scope
        events = list(blocks._queue.event_ids_to_events.values())  # read only; Gradio's own record of live events
        kind, key = visitor.split(":", 1)
        if kind == "session":
            return sum(event.session_hash == key for event in events)
        # Gradio gives an event that came without a session its own id as session: those are counted by address.
        return sum(event.session_hash == event._id and event.request is not None
                   and _address(event.request.headers, event.request.client) == key for event in events)

    async def _refuse(self, send) -> None:
        body = json.dumps({"detail": refusal(self.limit)}).encode()
        await send({"type": "http.response.start", "status": REFUSED_STATUS,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
