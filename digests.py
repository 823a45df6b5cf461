"""SHA-256 without OpenSSL: the digest behind seeded replies, ids and colours.

``hashlib`` imports ``_hashlib``, which loads OpenSSL's libcrypto: about 3.7 MB of resident
memory (measured on an idle server after one run) in a server whose whole baseline is under
30 MB, for a few hundred bytes hashed per run. CPython also ships its own SHA-256, the module
``hashlib`` itself falls back to when OpenSSL is missing, and the one ``random`` uses for its
SHA-512: ``_sha256`` up to Python 3.11, renamed ``_sha2`` in 3.12. Both are standard-library
modules of their versions (``sys.stdlib_module_names`` lists ``_sha256`` in 3.10 and 3.11 and
``_sha2`` from 3.12), so the version decides which one is imported. SHA-256 is SHA-256: the
digests are the same bytes as ``hashlib``'s, so seeded replies, ids and colours do not change
(``tests/test_pipes.py`` checks it). A build without the built-in module (configured with
``--with-builtin-hashlib-hashes`` leaving sha2 out) uses ``hashlib``.

The built-in code is slower than OpenSSL's on long inputs (about 30 us for 10 kB, 3 ms for
1 MB, against 6 us and 0.5 ms); below 1 kB, under a microsecond either way.
"""

from __future__ import annotations

import sys

try:
    if sys.version_info >= (3, 12):
        from _sha2 import sha256  # the standard library's built-in SHA-2 module from 3.12
    else:
        from _sha256 import sha256  # its name in 3.9 to 3.11
except ImportError:  # a Python built without it
    from hashlib import sha256

__all__ = ["sha256"]
