"""SHA-256 without OpenSSL: the digest behind seeded replies, ids and colours.

``hashlib`` imports ``_hashlib``, which loads OpenSSL's libcrypto: about 3.5 MB of resident
memory in a server whose whole baseline is under 30 MB, for a few hundred bytes hashed per run.
Python also ships its own SHA-256 (``_sha256`` up to 3.11, ``_sha2`` from 3.12): the module
``hashlib`` falls back to without OpenSSL, and the way the standard library's ``random`` takes
its ``_sha512`` to stay light. SHA-256 is SHA-256: the digests are the same bytes, so seeded
replies, ids and colours do not change. A build without those modules (configured with
``--with-builtin-hashlib-hashes`` leaving sha2 out) uses ``hashlib``.

The built-in code is slower than OpenSSL's on long inputs (about 30 us for 10 kB, 3 ms for
1 MB, against 6 us and 0.5 ms); below 1 kB, under a microsecond either way.
"""

from __future__ import annotations

try:
    from _sha2 import sha256  # Python 3.12+
except ImportError:
    try:
        from _sha256 import sha256  # Python 3.9-3.11
    except ImportError:
        from hashlib import sha256

__all__ = ["sha256"]
