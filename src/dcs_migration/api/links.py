"""Download links of the embedded backup store: URLs of this service carrying an expiring
signature, so a link can be handed to a tool that holds no AK/SK (as a presigned URL is).

The signature is HMAC-SHA256 over the path and the expiry time, with a key derived from the
service's secret key; changing either, or using it after it expires, is refused. A link is a
bearer token: whoever holds it may download the file until it expires, with no other
credential. Its host is `DCS_MIGRATION_PUBLIC_URL` when that is set, else the request's own.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import quote, urlencode

LINK_PURPOSE = "backup-download-links"
MIN_EXPIRATION = 300
MAX_EXPIRATION = 86400
_EXPIRES_RE = re.compile(r"[0-9]{1,12}")  # Unix seconds, until the year 33658


class LinkRefused(Exception):
    """The link is expired, altered or malformed (the message says which)."""


def download_path(project_id: str, backup_id: str, file_name: str) -> str:
    return f"/v2/{quote(project_id, safe='')}/backup-files/{backup_id}/{quote(file_name, safe='')}"


def sign(key: bytes, path: str, expires: int) -> str:
    return hmac.new(key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()


def signed_query(key: bytes, path: str, expires: int) -> str:
    return urlencode({"expires": expires, "signature": sign(key, path, expires)})


def verify(key: bytes, path: str, expires: str, signature: str, now: float) -> None:
    """Raise LinkRefused unless `signature` signs `path` until `expires` (Unix seconds),
    and that time has not passed."""
    # ASCII digits, and no more of them than a time has: `int` refuses a string of
    # thousands of digits and `str.isdigit` takes "²" for one.
    if not _EXPIRES_RE.fullmatch(expires):
        raise LinkRefused("the link's expiry is not a time")
    if not hmac.compare_digest(sign(key, path, int(expires)), signature):
        raise LinkRefused("the link's signature does not match it (altered or not ours)")
    if int(expires) < now:
        raise LinkRefused("the link has expired")
