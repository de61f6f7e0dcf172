"""One client keeps many generations pending; do other visitors still get their views answered?

Starts the app in this process on a free localhost port, offline, with the page's real queue bound, and slows
each generation down (as a busy model would) so that the hog's requests stay pending. The hog submits
`--hog` generations, joining the queue as one page does (one session; `--anonymous`: plain HTTP calls that
name no session); then `--others` other `gradio_client` clients each ask for /bert_tokenize.
Run once with the app's fair share and once with it lifted (`--no-share`) to see the difference:

    python -m tools.queue_hog            # hog admitted / refused, others answered
    python -m tools.queue_hog --no-share # the same with one visitor allowed to fill the queue
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hog", type=int, default=60, help="generations the hog submits at once")
    parser.add_argument("--others", type=int, default=5, help="other clients, one /bert_tokenize each")
    parser.add_argument("--no-share", action="store_true", help="lift the per-visitor share (the old behaviour)")
    parser.add_argument("--anonymous", action="store_true", help="the hog uses plain HTTP calls with no session")
    args = parser.parse_args(argv)
    if args.no_share:
        os.environ["PLAYGROUND_PENDING_PER_VISITOR"] = str(10 * args.hog)

    import httpx
    from gradio_client import Client
    from gradio_client.utils import QueueError

    from app import gpt_tab
    from app.fair_queue import pending_per_visitor
    from app.ui import build_demo, launch_options, queue_size
    from bench.app_bench import free_port

    real_generate = gpt_tab.generate

    def busy_generate(*a, **k):  # a model that takes a while: the hog's generations stay pending
        time.sleep(3.0)
        yield from real_generate(*a, **k)

    gpt_tab.generate = busy_generate
    demo = build_demo()
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    url = f"http://127.0.0.1:{port}/"
    generate_id = next(fn._id for fn in demo.fns.values() if fn.api_name == "gpt_generate")
    data = ["tiny-gpt (embedded)", "", "the dog", 5, 1.0, 0, 1.0, 0, False]
    try:
        # The hog joins the queue as a page does (one session, many events), or as plain HTTP calls (no session).
        codes = []
        with httpx.Client(base_url=url, timeout=30) as http:
            for _ in range(args.hog):
                if args.anonymous:
                    response = http.post("/gradio_api/call/gpt_generate", json={"data": data})
                else:
                    response = http.post("/gradio_api/queue/join", json={"data": data, "fn_index": generate_id,
                                                                           "session_hash": "hog-session"})
                codes.append(response.status_code)
        answered, busy = 0, 0
        for _ in range(args.others):
            try:
                Client(url, verbose=False).predict(api_name="/bert_tokenize")
                answered += 1
            except QueueError:
                busy += 1
        share = "lifted" if args.no_share else pending_per_visitor()
        print(f"queue bound {queue_size()}, share per visitor {share}")
        print(f"hog ({'plain HTTP, no session' if args.anonymous else 'one session'}): {args.hog} generations: "
              f"{codes.count(200)} admitted, {codes.count(429)} refused as over its share (429), "
              f"{codes.count(503)} refused as queue full (503)")
        print(f"others: {answered} of {args.others} /bert_tokenize answered, {busy} refused as busy")
        return 0 if answered == args.others else 1
    finally:
        demo.close()


if __name__ == "__main__":
    sys.exit(main())
