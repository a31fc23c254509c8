"""Verification of the request signature of the official Huawei Cloud SDKs (sans-I/O).

A signed request carries::

    X-Sdk-Date: 20240102T030405Z
    Authorization: SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<h1;h2;...>, Signature=<hex>

The signature is hex HMAC-SHA256, keyed with the secret key (SK), of::

    SDK-HMAC-SHA256 \\n <X-Sdk-Date> \\n <hex sha256 of the canonical request>

and the canonical request is, lines joined by ``\\n``:

1. the method, upper case;
2. the path, percent-decoded, split at ``/``, each segment percent-encoded again with
   every byte escaped but ``A-Z a-z 0-9 - _ . ~``, joined by ``/``, with a ``/`` added at
   the end when there is none (``/v2/p/migration-task`` -> ``/v2/p/migration-task/``);
3. the query: every ``key=value`` pair decoded, the pairs sorted (by key, then value),
   each encoded as in 2, joined by ``&`` (``key=`` for an empty value);
4. one ``name:value`` line per signed header, in the order of SignedHeaders, the name in
   lower case and the value with surrounding white space removed, then an empty line;
5. the signed header names, joined by ``;``;
6. the hex sha256 of the body as sent (that of the empty string when there is none).

This is what the SDK's signer does. The Python SDK signs every header it sets whose name
has no ``_``: ``content-type``, ``host``, ``user-agent``, ``x-project-id`` (from the
credentials' project id) and ``x-sdk-date``; ``x-security-token`` too with temporary
credentials. It sends the query exactly in its canonical form, so the query as received
canonicalizes to itself. For a content type other than JSON or BSON it sets
``X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`` and signs that instead of the body's hash; the
API of this service only takes JSON, so such requests are refused unless the caller
allows them.

`verify_head` checks what needs no body, so that the service reads the body of none but
a request that may be signed right; `verify_body` the rest (`verify_request` is both).
They refuse (401, ``APIGW.0301``) a missing or malformed Authorization, an algorithm
other than SDK-HMAC-SHA256, SignedHeaders without ``host`` or ``x-sdk-date``, a signed
header absent from the request, a header of the signature repeated with another value,
an X-Sdk-Date not of the form YYYYMMDDTHHMMSSZ or more than 15 minutes away from `now`,
an unknown or revoked AK and a wrong signature (the last two with the same message; the
AK is not a secret, and one that exists cannot be guessed). A valid AK used on a path of
another project, or with an ``X-Project-Id`` of another project, is refused with 403,
``APIGW.0302`` (the gateway's code for a caller not authorized to access an API). The
messages never say whether a project or a task exists.

Not covered here: replay of a captured request within its 15 minutes (the service
refuses a second use of a signature of a call that changes something, see `app.signed`),
and the other algorithms of the SDK (SM3, ECDSA, the derived V11 scheme), refused as
unsupported.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import parse_qsl, quote, unquote

from .errors import APIGW_AUTH_FAILED, APIGW_NOT_AUTHORIZED, DcsError

ALGORITHM: Final = "SDK-HMAC-SHA256"
DATE_HEADER: Final = "x-sdk-date"
CONTENT_SHA256_HEADER: Final = "x-sdk-content-sha256"
PROJECT_ID_HEADER: Final = "x-project-id"
UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"
DATE_FORMAT: Final = "%Y%m%dT%H%M%SZ"
MAX_CLOCK_SKEW: Final = timedelta(minutes=15)
REQUIRED_SIGNED_HEADERS: Final = ("host", DATE_HEADER)
EMPTY_BODY_SHA256: Final = hashlib.sha256(b"").hexdigest()

KeyLookup = Callable[[str], tuple[str, str] | None]
"""AK -> (project_id, SK), or None for an unknown or revoked AK."""

Query = str | Iterable[tuple[str, str]]
"""A raw query string (without ``?``) or decoded (key, value) pairs."""

_AUTH_PREFIX: Final = "Incorrect IAM authentication information: "
_DATE_RE: Final = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_HEADER_NAME_RE: Final = re.compile(r"[!#$%&'*+.^`|~0-9a-z-]+")
_HEX64_RE: Final = re.compile(r"[0-9a-fA-F]{64}")
_VERSION_SEGMENT_RE: Final = re.compile(r"v[0-9]+(\.[0-9]+)?")


class AuthError(DcsError):
    """A refused signature: 401 (APIGW.0301) or 403 (APIGW.0302)."""

    @property
    def code(self) -> str:
        return self.error_code

    @property
    def message(self) -> str:
        return self.error_msg


def _unauthorized(reason: str) -> AuthError:
    return AuthError(401, APIGW_AUTH_FAILED, _AUTH_PREFIX + reason)


def _forbidden() -> AuthError:
    return AuthError(
        403,
        APIGW_NOT_AUTHORIZED,
        "The IAM user is not authorized to access the API: "
        "the access key does not belong to the project of this request",
    )


# -- canonical form ------------------------------------------------------------------


def _encode(text: str) -> str:
    """Percent-encode all but the unreserved characters, as UTF-8 (like the SDK)."""
    return quote(text, safe="~")


def canonical_uri(path: str) -> str:
    """The canonical form of a request path (percent-encoded as sent, or decoded)."""
    uri = "/".join(_encode(segment) for segment in unquote(path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def query_pairs(query: Query) -> list[tuple[str, str]]:
    """The decoded (key, value) pairs of a query; a raw string is split and unquoted.

    A raw string is decoded exactly as the web framework decodes it for the routes
    (`urllib.parse.parse_qsl`, blank values kept): ``%XX`` escapes, and ``+`` as a space.
    What is signed is then what the route reads: ``a+b`` and ``a%20b`` are one query and
    one signature, and a ``+`` meant as a plus must be sent as ``%2B`` (the SDK sends a
    space as ``%20`` and a plus as ``%2B``, so it never sends a raw ``+``).
    """
    if isinstance(query, str):
        return parse_qsl(query.lstrip("?"), keep_blank_values=True)
    return [(str(key), str(value)) for key, value in query]


def canonical_query_string(query: Query) -> str:
    """Sorted, encoded ``key=value`` pairs joined by ``&``."""
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(query_pairs(query)))


def _header_value(value: str) -> str:
    """A header value as the signer saw it, trimmed.

    The SDK sends a value's UTF-8 bytes; an HTTP stack that hands them over decoded as
    ISO-8859-1 is undone here.
    """
    value = value.strip()
    try:
        return value.encode("iso-8859-1").decode("utf-8")
    except UnicodeError:
        return value


def _lower_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
) -> dict[str, list[str]]:
    """Header values by lower-case name (every value of a repeated header).

    A plain dict has already lost the values of a repeated header but its first or last:
    the service passes the (name, value) pairs as received, so that the refusal of a
    header repeated with another value sees them all.
    """
    out: dict[str, list[str]] = {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        out.setdefault(name.lower(), []).append(value)
    return out


def canonical_request(
    method: str,
    path: str,
    query: Query,
    signed_headers: list[tuple[str, str]],
    payload_hash: str,
) -> str:
    """The canonical request of the signing scheme (see the module's doc)."""
    header_lines = "".join(f"{name}:{value}\n" for name, value in signed_headers)
    return "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            canonical_query_string(query),
            header_lines,
            ";".join(name for name, _ in signed_headers),
            payload_hash,
        ]
    )


def string_to_sign(sdk_date: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{sdk_date}\n{digest}"


def signature(sk: str, text_to_sign: str) -> str:
    """Hex HMAC-SHA256 of `text_to_sign` keyed with the SK."""
    return hmac.new(sk.encode("utf-8"), text_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


# -- Authorization header ------------------------------------------------------------


@dataclass(frozen=True)
class Authorization:
    """The parts of an ``Authorization: SDK-HMAC-SHA256 ...`` header."""

    access: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str | None) -> Authorization:
    """Parse the Authorization header; AuthError (401) when missing or malformed."""
    if not value or not value.strip():
        raise _unauthorized("the Authorization header is missing")
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _unauthorized(f"unsupported signing algorithm, expected {ALGORITHM}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, field_value = part.strip().partition("=")
        if not sep or key in fields:
            raise _unauthorized("malformed Authorization header")
        fields[key] = field_value.strip()
    if set(fields) != {"Access", "SignedHeaders", "Signature"}:
        raise _unauthorized("malformed Authorization header")
    names = tuple(fields["SignedHeaders"].split(";"))
    if (
        not fields["Access"]
        or not all(_HEADER_NAME_RE.fullmatch(name) for name in names)
        or len(set(names)) != len(names)
        or not _HEX64_RE.fullmatch(fields["Signature"])
    ):
        raise _unauthorized("malformed Authorization header")
    return Authorization(fields["Access"], names, fields["Signature"].lower())


def path_project_id(path: str) -> str | None:
    """The project of an API path ``/v<N>/<project_id>/...``, or None for another path."""
    segments = unquote(path).split("/")
    if len(segments) >= 3 and segments[0] == "" and _VERSION_SEGMENT_RE.fullmatch(segments[1]):
        return segments[2] or None
    return None


def _parse_date(value: str) -> datetime:
    if not _DATE_RE.fullmatch(value):
        raise ValueError(value)
    return datetime.strptime(value, DATE_FORMAT).replace(tzinfo=UTC)


# -- verification --------------------------------------------------------------------


@dataclass(frozen=True)
class SignedHead:
    """A request whose head passed every check that needs no body.

    Made by `verify_head` before the body is read, so that a request that cannot be
    signed right (no or malformed Authorization, a stale date, an unknown AK) is refused
    without the service taking in its body; `verify_body` then checks the body's hash and
    the signature itself.
    """

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    signed_headers: tuple[tuple[str, str], ...]
    sdk_date: str
    signed_at: datetime
    access: str
    signature: str
    project_id: str  # the project of the AK
    sk: str = field(repr=False)
    declared_sha256: str | None  # X-Sdk-Content-Sha256 as sent
    wanted_project: str | None  # the project the request addresses (path or argument)
    header_project: str | None  # X-Project-Id


@dataclass(frozen=True)
class AuthResult:
    """Who signed: the AK and the project it belongs to; and the signature itself, with
    the time it was made (a replayed one is told apart by these)."""

    project_id: str
    ak: str
    signature: str = field(default="", compare=False)
    signed_at: datetime | None = field(default=None, compare=False)


def verify_head(
    method: str,
    path: str,
    query: Query,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    lookup: KeyLookup,
    now: datetime | None = None,
    *,
    project_id: str | None = None,
    allow_unsigned_payload: bool = False,
) -> SignedHead:
    """Check what can be checked of a signature before its body is read, or raise
    `AuthError` (401): the Authorization header, the signed headers (each present, none
    repeated with another value), the date window and the AK.

    The arguments are those of `verify_request`; `headers` may also be the (name, value)
    pairs as received, every value of a repeated header included.
    """
    lowered = _lower_headers(headers)

    def single(name: str) -> str | None:
        values = lowered.get(name)
        if not values:
            return None
        if len({_header_value(v) for v in values}) > 1:
            raise _unauthorized(f"the header {name} is repeated with different values")
        return _header_value(values[0])

    auth = parse_authorization(single("authorization"))
    for required in REQUIRED_SIGNED_HEADERS:
        if required not in auth.signed_headers:
            raise _unauthorized(f"the {required} header must be signed")

    signed: list[tuple[str, str]] = []
    for name in auth.signed_headers:
        value = single(name)
        if value is None:
            raise _unauthorized(f"the signed header {name} is missing from the request")
        signed.append((name, value))

    sdk_date = dict(signed)[DATE_HEADER]
    try:
        signed_at = _parse_date(sdk_date)
    except ValueError:
        raise _unauthorized("X-Sdk-Date must be a UTC time of the form YYYYMMDDTHHMMSSZ") from None
    current = now or datetime.now(UTC)
    if current.tzinfo is None:
        current = current.replace(tzinfo=UTC)
    if abs(current - signed_at) > MAX_CLOCK_SKEW:
        raise _unauthorized("X-Sdk-Date is more than 15 minutes away from the server's time")

    declared = single(CONTENT_SHA256_HEADER)
    if declared == UNSIGNED_PAYLOAD and (
        not allow_unsigned_payload or CONTENT_SHA256_HEADER not in auth.signed_headers
    ):
        raise _unauthorized("an unsigned payload is not accepted")
    header_project = single(PROJECT_ID_HEADER)

    key = lookup(auth.access)
    if key is None:  # the answer of a wrong signature: it says nothing of which AKs exist
        raise _unauthorized("verify aksk signature fail")
    return SignedHead(
        method=method,
        path=path,
        query=tuple(query_pairs(query)),
        signed_headers=tuple(signed),
        sdk_date=sdk_date,
        signed_at=signed_at,
        access=auth.access,
        signature=auth.signature,
        project_id=key[0],
        sk=key[1],
        declared_sha256=declared,
        wanted_project=project_id if project_id is not None else path_project_id(path),
        header_project=header_project,
    )


def verify_body(head: SignedHead, body: bytes) -> AuthResult:
    """Check the body's hash and the signature of a request whose head passed
    `verify_head`: answer who signed it or raise `AuthError` (401, or 403 for a key of
    another project)."""
    payload_hash = EMPTY_BODY_SHA256
    if body:
        payload_hash = hashlib.sha256(body).hexdigest()
        declared = head.declared_sha256
        if declared is not None:
            if declared == UNSIGNED_PAYLOAD:
                payload_hash = declared  # allowed, or `verify_head` refused it
            elif declared.lower() != payload_hash:
                raise _unauthorized("X-Sdk-Content-Sha256 does not match the body")
            else:
                payload_hash = declared

    canonical = canonical_request(
        head.method, head.path, head.query, list(head.signed_headers), payload_hash
    )
    expected = signature(head.sk, string_to_sign(head.sdk_date, canonical))
    if not hmac.compare_digest(expected, head.signature):
        raise _unauthorized("verify aksk signature fail")

    if head.wanted_project is not None and head.wanted_project != head.project_id:
        raise _forbidden()
    if head.header_project is not None and head.header_project != head.project_id:
        raise _forbidden()
    return AuthResult(
        project_id=head.project_id,
        ak=head.access,
        signature=head.signature,
        signed_at=head.signed_at,
    )


def verify_request(
    method: str,
    path: str,
    query: Query,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes,
    lookup: KeyLookup,
    now: datetime | None = None,
    *,
    project_id: str | None = None,
    allow_unsigned_payload: bool = False,
) -> AuthResult:
    """Check the SDK signature of a request; answer who signed it or raise `AuthError`.

    `path` is the request path as received, best still percent-encoded (ASGI
    ``raw_path``); a decoded path gives the same result unless it contains ``%``.
    `query` is the raw query string (ASGI ``query_string``) or its decoded pairs.
    `headers` may be any mapping (a case-insensitive one with repeated names too) or the
    (name, value) pairs as received; `body` the bytes as received. `now` defaults to the
    current time (a naive value is taken as UTC). `project_id` is the project the request
    addresses; by default the one in the path ``/v<N>/<project_id>/...`` (no check when
    the path has none). The same as `verify_head` then `verify_body`.
    """
    head = verify_head(
        method,
        path,
        query,
        headers,
        lookup,
        now,
        project_id=project_id,
        allow_unsigned_payload=allow_unsigned_payload,
    )
    return verify_body(head, body)


__all__ = [
    "ALGORITHM",
    "MAX_CLOCK_SKEW",
    "AuthError",
    "AuthResult",
    "Authorization",
    "KeyLookup",
    "Query",
    "SignedHead",
    "canonical_query_string",
    "canonical_request",
    "canonical_uri",
    "parse_authorization",
    "path_project_id",
    "query_pairs",
    "signature",
    "string_to_sign",
    "verify_body",
    "verify_head",
    "verify_request",
]
