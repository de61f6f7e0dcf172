"""Transformer Playground: `python app.py` serves the app on http://127.0.0.1:7860.

Flags: --port, --host, --share (off by default), --download (fetch every Hub preset for offline use).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

# Before gradio or huggingface_hub are imported: no analytics, no telemetry.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Before torch loads OpenMP: a thread with no work sleeps instead of spinning. The app runs two requests at
# once on two cores; spinning threads of one took the cores the other's threads needed, and decoding fell
# from ~20 to ~2 tokens/s while another request computed (`python -m bench` prints the policy it ran under).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link (off by default)")
    parser.add_argument("--download", action="store_true", help="download all Hub presets, then exit")
    args = parser.parse_args(argv)
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
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_options())
    return 0


if __name__ == "__main__":
    sys.exit(main())
