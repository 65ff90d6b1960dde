"""What the FUSE handler tests share: the request context the kernel would
pass, and the deadline of one operation."""

from __future__ import annotations

import pyfuse3

CTX = pyfuse3.RequestContext()
DEADLINE = 30.0
