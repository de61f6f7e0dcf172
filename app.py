"""Transformer Playground: `python app.py` serves the app on http://127.0.0.1:7860.

Flags: --port, --host, --share (off by default), --download (fetch every Hub preset for offline use).
Without --host/--port the app listens where GRADIO_SERVER_NAME / GRADIO_SERVER_PORT say (a Hugging Face Space
sets 0.0.0.0 and its port), else on 127.0.0.1:7860.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

# Before gradio or huggingface_hub are imported: no analytics, no telemetry.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Gradio's queue rebuilds a pandas table of every recorded event (up to 10,000) after each event, for a
# monitoring summary this app never enables: 11% of the server's time under the 30-user load test, and growing
# with the events served. Recomputed every 1,000 events it costs nothing noticeable.
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")
# Before torch loads OpenMP: a thread with no work sleeps instead of spinning. The app runs two requests at
# once on two cores; spinning threads of one took the cores the other's threads needed, and decoding fell
# from ~20 to ~2 tokens/s while another request computed (`python -m bench` prints the policy it ran under).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The page being served, kept at module level: Gradio's reloaders (a Space's dev mode, `gradio app.py`) look
# the running page up by this name in the started module, and swap in the one a re-run of this file builds.
demo = None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    host = os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    port = os.environ.get("GRADIO_SERVER_PORT") or "7860"  # argparse converts a string default with `type`
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=host,
                        help=f"address to listen on (default {host}: GRADIO_SERVER_NAME, else 127.0.0.1)")
    parser.add_argument("--port", type=int, default=port,
                        help=f"port to listen on (default {port}: GRADIO_SERVER_PORT, else 7860)")
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link (off by default)")
    parser.add_argument("--download", action="store_true", help="download all Hub presets, then exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    global demo
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from core.runtime import configure_threads

    configure_threads()
    if args.download:
        from app.models import download_presets

        failed = download_presets()
        for line in failed:
            print("failed:", line, file=sys.stderr)
        return 1 if failed else 0

    from app.ui import build_demo, launch_options

    demo = build_demo()
    # Outside the reloader this blocks until the server stops; when a reloader re-runs this file it returns
    # at once and the reloader serves the new `demo` instead.
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_options())
    return 0


if __name__ == "__main__":
    status = main()
    # Only a failed --download ends with an error status. No sys.exit otherwise: a reloader re-runs this file in
    # its own thread, which a SystemExit would end, and the watching with it.
    if status:
        sys.exit(status)
