"""``python -m licensing.sandbox``: serve a simulated Graph tenant until SIGTERM/SIGINT."""

from __future__ import annotations

from licensing.sandbox.server import main

if __name__ == "__main__":
    main()
