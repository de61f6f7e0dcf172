"""A fair share of the page's queue: each visitor may have only a few events waiting or running at once.

The queue is bounded for the whole page (`app.ui.queue_size()`), so without a share per visitor one client
keeping 48 generations pending filled it, and every other visitor's click was refused as "busy". This ASGI
middleware looks at each request to join the queue (the page's and `gradio_client`'s `/queue/join`, and the
plain HTTP `/call/<endpoint>`) before Gradio admits it, and refuses it with HTTP 429 and a sentence saying why
when its visitor already has `pending_per_visitor()` events in the queue. A visitor is a browser page or a
`gradio_client` client (Gradio's session hash); a request that names no session counts against its address.

Some concurrency groups are tighter still (`ONE_PER_VISITOR`): a Learn training run holds its group, which
runs one at a time, for up to a minute, so one visitor queuing eight runs kept every other visitor's training
waiting eight minutes. There a visitor may have one event waiting or running; a second is refused with 429
and a sentence that says so.

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


# Concurrency groups (`concurrency_id`) in which a visitor may have only one event waiting or running, with
# what the page calls such an event.
ONE_PER_VISITOR = {"learn": "training run"}


def one_per_visitor_refusal(what: str) -> str:
    return (f"You already have a {what} waiting or running; one visitor may have one at a time, so that everyone "
            f"gets a turn at the trainer. Wait for it to finish (or press Stop), then start the next.")


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
            await self._refuse(send, refusal(self.limit))
            return
        group = self._group(scope, body)
        keys = [visitor]
        if group in ONE_PER_VISITOR:
            keys.append(f"{visitor}|{group}")
            if self._pending(scope, visitor, group) + self.admitting[keys[-1]] >= 1:
                await self._refuse(send, one_per_visitor_refusal(ONE_PER_VISITOR[group]))
                return

        async def replay():
            return messages.pop(0) if messages else await receive()

        for key in keys:
            self.admitting[key] += 1
        try:
            await self.app(scope, replay, send)
        finally:
            for key in keys:
                self.admitting[key] -= 1
                if not self.admitting[key]:
                    del self.admitting[key]

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
    def _group(scope, body: bytes) -> str | None:
        """The concurrency group of the event asked for: by `fn_index` (the page, `gradio_client`) or by the
        endpoint's name in a `/call/<api_name>` path; None when it names no known event (Gradio refuses it)."""
        fns = scope["app"].get_blocks().fns
        try:
            index = json.loads(body).get("fn_index")
        except (ValueError, AttributeError):
            index = None
        if isinstance(index, int) and index in fns:
            return fns[index].concurrency_id
        if "/call/" in scope.get("path", ""):
            name = scope["path"].split("/call/", 1)[1].strip("/")
            return next((fn.concurrency_id for fn in fns.values() if fn.api_name == name), None)
        return None

    @staticmethod
    def _pending(scope, visitor: str, group: str | None = None) -> int:
        """The visitor's events that Gradio holds, waiting or running (it drops each when it ends or is
        cancelled); only those of concurrency group `group` when given."""
        blocks = scope["app"].get_blocks()  # Starlette puts the application in the scope
        events = list(blocks._queue.event_ids_to_events.values())  # read only; Gradio's own record of live events
        if group is not None:
            events = [event for event in events if event.concurrency_id == group]
        kind, key = visitor.split(":", 1)
        if kind == "session":
            return sum(event.session_hash == key for event in events)
        # Gradio gives an event that came without a session its own id as session: those are counted by address.
        return sum(event.session_hash == event._id and event.request is not None
                   and _address(event.request.headers, event.request.client) == key for event in events)

    @staticmethod
    async def _refuse(send, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": REFUSED_STATUS,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
