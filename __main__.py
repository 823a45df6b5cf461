"""Start the server as an installed command: ``langbase-mock`` or ``python3 -m langbase_mock``
(after ``pipx install .`` or ``pip install .``), and ``python3 .`` from a checkout.

The modules are flat (``import pipes``, ``import api``), as ``python3 main.py`` needs; installed,
they live in the ``langbase_mock`` directory, which is put first on ``sys.path`` so that those
imports find them (before the standard library's own ``pipes`` module on Python < 3.13).
"""

import os
import sys


def run() -> None:
    """Entry point of the ``langbase-mock`` command: ``main.main`` with that program name;
    exits with its status."""
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path[:1] != [here]:
        sys.path.insert(0, here)
    if "http.client" not in sys.modules and "ssl" not in sys.modules:
        # As main.py does when run as a script: http.client without ssl, so that OpenSSL
        # stays unloaded unless an https --upstream needs it.
        sys.modules["ssl"] = None  # type: ignore[assignment]
        try:
            __import__("http.client")
        finally:
            del sys.modules["ssl"]
    import main

    sys.exit(main.main(prog="langbase-mock"))


if __name__ == "__main__":
    run()
