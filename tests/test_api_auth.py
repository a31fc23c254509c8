"""Request-signature verification against what the official Huawei Cloud SDK really sends.

Every signature here is made by the SDK's own code: either the DCS client calling a
loopback HTTP server that records the request as it arrived on the wire, or the SDK's
credentials/signer applied to an `SdkRequest`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from huaweicloudsdkdcs.v2 import (
    BackupFilesBody,
    BatchStopMigrationTasksBody,
    BatchStopMigrationTasksRequest,
    CreateMigrationTaskBody,
    CreateMigrationTaskRequest,
    DcsClient,
    DeleteMigrateTaskRequest,
    DeleteMigrationTaskRequest,
    Files,
    ListMigrationTaskRequest,
    ShowMigrationTaskRequest,
    TargetInstanceBody,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from dcs_migration.api.auth import (
    AuthError,
    AuthResult,
    canonical_query_string,
    canonical_uri,
    parse_authorization,
    path_project_id,
    query_pairs,
    verify_body,
    verify_head,
    verify_request,
)
from dcs_migration.api.errors import APIGW_AUTH_FAILED, APIGW_NOT_AUTHORIZED

KEYS = {
    "AKONE": ("proj-one", "sk-one-secret"),
    "AKTWO": ("proj-two", "sk-two-secret"),
}
REVOKED = "AKREVOKED"  # a key the SDK can sign with, that lookup no longer knows


def lookup(ak: str) -> tuple[str, str] | None:
    return KEYS.get(ak)


# -- a loopback server recording what the SDK sends ----------------------------------


@dataclass(frozen=True)
class Captured:
    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header_dict(self) -> dict[str, str]:
        return dict(self.headers)

    def with_header(self, name: str, value: str | None) -> Captured:
        kept = tuple((k, v) for k, v in self.headers if k.lower() != name.lower())
        if value is not None:
            kept += ((name, value),)
        return replace(self, headers=kept)

    @property
    def signed_at(self) -> datetime:
        date = self.header_dict()["X-Sdk-Date"]
        return datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

    def verify(self, **changes: Any) -> AuthResult:
        args: dict[str, Any] = {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.header_dict(),
            "body": self.body,
            "lookup": lookup,
            "now": self.signed_at + timedelta(seconds=3),
        }
        args.update(changes)
        return verify_request(**args)


class _Recorder(BaseHTTPRequestHandler):
    captured: list[Captured]

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        self.captured.append(Captured(self.command, path, query, tuple(self.headers.items()), body))
        out = json.dumps({"id": "t", "name": "n", "status": "MIGRATING", "error": ""}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class SdkServer:
    def __init__(self) -> None:
        handler = type("Recorder", (_Recorder,), {"captured": []})
        self.captured: list[Captured] = handler.captured
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def client(self, ak: str, sk: str, project_id: str) -> Any:
        return (
            DcsClient.new_builder()
            .with_credentials(BasicCredentials(ak, sk, project_id))
            .with_endpoints([self.endpoint])
            .build()
        )

    def call(self, ak: str, sk: str, project_id: str, method: str, request: Any) -> Captured:
        before = len(self.captured)
        getattr(self.client(ak, sk, project_id), method)(request)
        assert len(self.captured) == before + 1
        return self.captured[-1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def sdk() -> Iterator[SdkServer]:
    with pytest.MonkeyPatch.context() as mp:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            mp.delenv(name, raising=False)
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        server = SdkServer()
        try:
            yield server
        finally:
            server.close()


def create_body() -> CreateMigrationTaskBody:
    return CreateMigrationTaskBody(
        task_name="migration1",
        description="Test",
        migration_type="backupfile_import",
        migration_method="full_amount_migration",
        backup_files=BackupFilesBody(
            file_source="self_build_obs",
            bucket_name="bucketName",
            files=[Files(file_name="fileName", size="754.0MB")],
        ),
        target_instance=TargetInstanceBody(id="d2c8399f", name="dcs-test", password="xxxxxx"),
    )


@pytest.fixture(scope="module")
def create_call(sdk: SdkServer) -> Captured:
    request = CreateMigrationTaskRequest(body=create_body())
    return sdk.call("AKONE", "sk-one-secret", "proj-one", "create_migration_task", request)


@pytest.fixture(scope="module")
def list_call(sdk: SdkServer) -> Captured:
    request = ListMigrationTaskRequest(offset=0, limit=10, name="a b+c/é~%")
    return sdk.call("AKONE", "sk-one-secret", "proj-one", "list_migration_task", request)


def refused(captured: Captured, status: int = 401, **changes: Any) -> AuthError:
    with pytest.raises(AuthError) as info:
        captured.verify(**changes)
    err = info.value
    assert err.status == status
    assert err.code == (APIGW_AUTH_FAILED if status == 401 else APIGW_NOT_AUTHORIZED)
    assert err.to_body()["error_code"] == err.code
    return err


# -- what the SDK sends, and that it is accepted --------------------------------------


def test_the_sdk_signs_these_headers(create_call: Captured) -> None:
    auth = parse_authorization(create_call.header_dict()["Authorization"])
    assert auth.access == "AKONE"
    assert auth.signed_headers == (
        "content-type",
        "host",
        "user-agent",
        "x-project-id",
        "x-sdk-date",
    )
    assert create_call.header_dict()["X-Project-Id"] == "proj-one"


def test_a_signed_create_call_is_accepted(create_call: Captured) -> None:
    assert create_call.method == "POST"
    assert create_call.path == "/v2/proj-one/migration-task"
    assert json.loads(create_call.body)["backup_files"]["files"][0]["size"] == "754.0MB"
    assert create_call.verify() == AuthResult(project_id="proj-one", ak="AKONE")


def test_a_signed_query_is_accepted_raw_or_decoded(list_call: Captured) -> None:
    assert list_call.method == "GET" and list_call.body == b""
    assert "name=a%20b%2Bc%2F%C3%A9~%25" in list_call.query
    assert list_call.verify().project_id == "proj-one"
    pairs = parse_qsl(list_call.query, keep_blank_values=True)
    assert list_call.verify(query=pairs).ak == "AKONE"
    # the same pairs in another order canonicalize alike
    assert list_call.verify(query="&".join(reversed(list_call.query.split("&")))).ak == "AKONE"


def test_starlette_headers_are_accepted(create_call: Captured) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in create_call.headers]
    assert create_call.verify(headers=Headers(raw=raw)).ak == "AKONE"


@pytest.mark.parametrize(
    ("method", "request_"),
    [
        ("show_migration_task", ShowMigrationTaskRequest(task_id="a b/é~x")),
        (
            "delete_migration_task",
            DeleteMigrationTaskRequest(body=DeleteMigrateTaskRequest(task_id_list=["t1", "t2"])),
        ),
        (
            "batch_stop_migration_tasks",
            BatchStopMigrationTasksRequest(body=BatchStopMigrationTasksBody(migration_tasks=["t"])),
        ),
    ],
)
def test_other_calls_are_accepted(sdk: SdkServer, method: str, request_: Any) -> None:
    captured = sdk.call("AKTWO", "sk-two-secret", "proj-two", method, request_)
    assert captured.verify() == AuthResult(project_id="proj-two", ak="AKTWO")
    # a decoded path verifies alike (it has no '%' of its own)
    if method == "show_migration_task":
        assert captured.path == "/v2/proj-two/migration-task/a%20b%2F%C3%A9~x"
        assert captured.verify(path="/v2/proj-two/migration-task/a b/é~x").ak == "AKTWO"


# -- tampering --------------------------------------------------------------------------


def test_a_tampered_body_is_refused(create_call: Captured) -> None:
    body = create_call.body.replace(b'"migration1"', b'"migration2"')
    assert body != create_call.body
    err = refused(create_call, body=body)
    assert "signature" in err.message
    refused(create_call, body=b"")


def test_a_tampered_path_is_refused(create_call: Captured) -> None:
    refused(create_call, path="/v2/proj-one/migration-task/x")
    refused(create_call, path="/v2/proj-one/migration-tasks")


def test_a_tampered_query_is_refused(list_call: Captured) -> None:
    refused(list_call, query=list_call.query.replace("limit=10", "limit=50"))
    refused(list_call, query=list_call.query + "&extra=1")
    refused(list_call, query="")


def test_another_method_is_refused(create_call: Captured, list_call: Captured) -> None:
    refused(create_call, method="PUT")
    refused(list_call, method="DELETE")


def test_a_tampered_signed_header_is_refused(create_call: Captured) -> None:
    refused(
        create_call, headers=create_call.with_header("Content-Type", "text/plain").header_dict()
    )
    refused(create_call, headers=create_call.with_header("Host", "evil:1").header_dict())


# -- dates ----------------------------------------------------------------------------


def test_a_date_more_than_15_minutes_off_is_refused(create_call: Captured) -> None:
    at = create_call.signed_at
    assert create_call.verify(now=at + timedelta(minutes=15)).ak == "AKONE"
    assert create_call.verify(now=at - timedelta(minutes=14)).ak == "AKONE"
    assert create_call.verify(now=(at + timedelta(minutes=1)).replace(tzinfo=None)).ak == "AKONE"
    err = refused(create_call, now=at + timedelta(minutes=15, seconds=1))
    assert "15 minutes" in err.message
    refused(create_call, now=at - timedelta(minutes=16))
    refused(create_call, now=at + timedelta(days=1))


def test_a_malformed_date_is_refused(create_call: Captured) -> None:
    date = create_call.header_dict()["X-Sdk-Date"]
    for bad in ("", date[:-1], date.replace("T", " "), "2024-01-02T03:04:05Z"):
        err = refused(create_call, headers=create_call.with_header("X-Sdk-Date", bad).header_dict())
        assert "X-Sdk-Date" in err.message


# -- signed headers ---------------------------------------------------------------------


def sdk_sign(
    credentials: BasicCredentials,
    *,
    method: str = "POST",
    resource_path: str = "/v2/proj-one/migration-task",
    query: list[tuple[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    body: bytes | None = b'{"task_name": "x"}',
    host: str = "127.0.0.1:8080",
) -> SdkRequest:
    """An `SdkRequest` signed by the SDK's credentials (the same path the client takes)."""
    request = SdkRequest(
        method=method,
        schema="http",
        host=host,
        resource_path=resource_path,
        query_params=list(query or []),
        header_params=dict(headers or {"Content-Type": "application/json"}),
        body=body,
    )
    signed: SdkRequest = credentials.sign_request(request)
    return signed


def sdk_sign_only(credentials: BasicCredentials, request: SdkRequest, names: list[str]) -> str:
    """An Authorization value, computed by the SDK's signer, signing only `names`."""
    signer = Signer(credentials)
    date = datetime.strptime(request.header_params["X-Sdk-Date"], "%Y%m%dT%H%M%SZ")
    canonical = signer._process_canonical_request(request, names)
    text = signer._process_string_to_sign(canonical, date)
    value = signer._sign_string_to_sign(text, credentials.sk)
    return str(signer._process_auth_header_value(value, credentials.ak, names))


def request_args(request: SdkRequest, **changes: Any) -> dict[str, Any]:
    date = datetime.strptime(request.header_params["X-Sdk-Date"], "%Y%m%dT%H%M%SZ")
    args: dict[str, Any] = {
        "method": request.method,
        "path": request.resource_path,
        "query": request.uri.partition("?")[2],
        "headers": dict(request.header_params),
        "body": request.body or b"",
        "lookup": lookup,
        "now": date.replace(tzinfo=UTC),
    }
    args.update(changes)
    return args


def test_sdk_signed_request_object_is_accepted() -> None:
    request = sdk_sign(BasicCredentials("AKONE", "sk-one-secret", "proj-one"))
    assert verify_request(**request_args(request)).ak == "AKONE"


@pytest.mark.parametrize("left_out", ["host", "x-sdk-date"])
def test_host_and_date_must_be_signed(left_out: str) -> None:
    credentials = BasicCredentials("AKONE", "sk-one-secret", "proj-one")
    request = sdk_sign(credentials)
    names = [n for n in ("content-type", "host", "x-project-id", "x-sdk-date") if n != left_out]
    # a signature that is right for what it covers, but does not cover `left_out`
    headers = dict(request.header_params, Authorization=sdk_sign_only(credentials, request, names))
    with pytest.raises(AuthError) as info:
        verify_request(**request_args(request, headers=headers))
    assert info.value.status == 401 and info.value.code == APIGW_AUTH_FAILED
    assert left_out in info.value.message
    # with every signed header present, the same construction is accepted
    names = ["content-type", "host", "x-sdk-date"]
    headers = dict(request.header_params, Authorization=sdk_sign_only(credentials, request, names))
    assert verify_request(**request_args(request, headers=headers)).ak == "AKONE"


@pytest.mark.parametrize("dropped", ["Host", "X-Sdk-Date", "User-Agent", "X-Project-Id"])
def test_a_signed_header_missing_from_the_request_is_refused(
    create_call: Captured, dropped: str
) -> None:
    err = refused(create_call, headers=create_call.with_header(dropped, None).header_dict())
    assert dropped.lower() in err.message


def test_a_repeated_signed_header_with_another_value_is_refused(create_call: Captured) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in create_call.headers]
    raw.append((b"host", b"evil.example:80"))
    refused(create_call, headers=Headers(raw=raw))


@pytest.mark.parametrize("name", ["X-Sdk-Date", "Authorization", "X-Project-Id"])
def test_a_header_pair_list_shows_every_value(create_call: Captured, name: str) -> None:
    """Pairs as received (what the service passes): a second value of a header of the
    signature, before or after the first, is seen and refused."""
    pairs = list(create_call.headers)
    assert create_call.verify(headers=pairs).ak == "AKONE"
    for repeated in ([*pairs, (name, "other")], [(name, "other"), *pairs]):
        err = refused(create_call, headers=repeated)
        assert f"the header {name.lower()} is repeated" in err.message


# -- before the body, and after --------------------------------------------------------


def test_the_head_is_checked_without_the_body(create_call: Captured) -> None:
    """`verify_head` refuses what needs no body (here an unknown AK, with the message of a
    wrong signature); what passes it is refused or accepted by `verify_body`."""
    c = create_call
    now = c.signed_at + timedelta(seconds=3)
    head = verify_head(c.method, c.path, c.query, c.headers, lookup, now)
    assert verify_body(head, c.body).ak == "AKONE"
    with pytest.raises(AuthError) as info:
        verify_body(head, c.body + b" ")
    assert "verify aksk signature fail" in info.value.message
    with pytest.raises(AuthError) as info:
        verify_head(c.method, c.path, c.query, c.headers, lambda ak: None, now)
    assert "verify aksk signature fail" in info.value.message


def test_a_raw_plus_in_a_query_is_a_space() -> None:
    """The routes read ``+`` in a query as a space; so does the verifier."""
    assert query_pairs("name=a+b&x=%2B") == [("name", "a b"), ("x", "+")]
    assert canonical_query_string("name=a+b") == canonical_query_string("name=a%20b")
    assert canonical_query_string("name=a+b") != canonical_query_string("name=a%2Bb")


# -- the Authorization header itself -------------------------------------------------------


# How a good Authorization header is spoilt: name -> the spoilt header (None: no header).
MALFORMED_AUTHORIZATION: dict[str, Callable[[str], str | None]] = {
    "missing": lambda value: None,
    "empty": lambda value: "",
    "another algorithm": lambda value: value.replace("SDK-HMAC-SHA256", "SDK-HMAC-SM3"),
    "no space after the algorithm": lambda value: value.replace(
        "SDK-HMAC-SHA256 ", "SDK-HMAC-SHA256"
    ),
    "a misspelt field": lambda value: value.replace("Access=", "Acces="),
    "a signature not in hex": lambda value: value.replace(", Signature=", ", Signature=zz"),
    "an extra field": lambda value: value + ", Extra=1",
    "a header signed that was not": lambda value: value.replace(
        "SignedHeaders=", "SignedHeaders=Host;"
    ),
    "another scheme": lambda value: "Bearer abc",
}


@pytest.mark.parametrize(
    "spoil", MALFORMED_AUTHORIZATION.values(), ids=list(MALFORMED_AUTHORIZATION)
)
def test_missing_or_malformed_authorization_is_refused(
    create_call: Captured, spoil: Callable[[str], str | None]
) -> None:
    bad = spoil(create_call.header_dict()["Authorization"])
    err = refused(create_call, headers=create_call.with_header("Authorization", bad).header_dict())
    assert err.message.startswith("Incorrect IAM authentication information")


def test_an_uppercase_signature_is_the_same_signature(create_call: Captured) -> None:
    value = create_call.header_dict()["Authorization"]
    head, _, sig = value.rpartition("Signature=")
    headers = create_call.with_header("Authorization", head + "Signature=" + sig.upper())
    assert create_call.verify(headers=headers.header_dict()).ak == "AKONE"


# -- keys and projects --------------------------------------------------------------------


def test_unknown_wrong_and_revoked_keys_are_refused_alike(sdk: SdkServer) -> None:
    body = CreateMigrationTaskRequest(body=create_body())
    unknown = sdk.call("AKNOBODY", "whatever", "proj-one", "create_migration_task", body)
    revoked = sdk.call(REVOKED, "sk-revoked", "proj-one", "create_migration_task", body)
    wrong_sk = sdk.call("AKONE", "not-the-sk", "proj-one", "create_migration_task", body)
    messages = {refused(c).message for c in (unknown, revoked, wrong_sk)}
    assert messages == {"Incorrect IAM authentication information: verify aksk signature fail"}
    # a key that was known and is revoked: the lookup answers None
    ok = sdk.call("AKONE", "sk-one-secret", "proj-one", "create_migration_task", body)
    refused(ok, lookup=lambda ak: None)


def test_a_key_used_on_another_project_is_forbidden(sdk: SdkServer) -> None:
    # AKTWO belongs to proj-two; the SDK is configured for proj-one
    captured = sdk.call(
        "AKTWO", "sk-two-secret", "proj-one", "list_migration_task", ListMigrationTaskRequest()
    )
    assert captured.path == "/v2/proj-one/migration-tasks"
    err = refused(captured, status=403)
    assert "proj-one" not in err.message and "proj-two" not in err.message
    # the caller may name the addressed project itself
    ok = sdk.call(
        "AKTWO", "sk-two-secret", "proj-two", "list_migration_task", ListMigrationTaskRequest()
    )
    assert ok.verify().project_id == "proj-two"
    refused(ok, status=403, project_id="proj-one")


def test_an_x_project_id_of_another_project_is_forbidden() -> None:
    credentials = BasicCredentials("AKONE", "sk-one-secret", "proj-two")
    request = sdk_sign(credentials, resource_path="/v2/proj-one/migration-task")
    with pytest.raises(AuthError) as info:
        verify_request(**request_args(request))
    assert info.value.status == 403


def test_a_bad_signature_is_checked_before_the_project() -> None:
    # a forged request on another project's path answers 401, never 403
    credentials = BasicCredentials("AKTWO", "wrong-sk", "proj-one")
    request = sdk_sign(credentials)
    with pytest.raises(AuthError) as info:
        verify_request(**request_args(request))
    assert info.value.status == 401


# -- payload hash variants ----------------------------------------------------------------


def test_an_unsigned_payload_is_refused_unless_allowed() -> None:
    credentials = BasicCredentials("AKONE", "sk-one-secret", "proj-one")
    request = sdk_sign(credentials, headers={"Content-Type": "text/plain"}, body=b"hello")
    assert request.header_params["X-Sdk-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    with pytest.raises(AuthError) as info:
        verify_request(**request_args(request))
    assert info.value.status == 401 and "unsigned" in info.value.message
    result = verify_request(**request_args(request), allow_unsigned_payload=True)
    assert result.ak == "AKONE"


def test_a_declared_body_hash_must_match_the_body(create_call: Captured) -> None:
    import hashlib

    right = hashlib.sha256(create_call.body).hexdigest()
    wrong = hashlib.sha256(b"other").hexdigest()
    headers = create_call.with_header("X-Sdk-Content-Sha256", wrong).header_dict()
    refused(create_call, headers=headers)
    headers = create_call.with_header("X-Sdk-Content-Sha256", right).header_dict()
    assert create_call.verify(headers=headers).ak == "AKONE"


def test_non_ascii_header_values_as_the_sdk_sends_them() -> None:
    credentials = BasicCredentials("AKONE", "sk-one-secret", "proj-one")
    request = sdk_sign(
        credentials, headers={"Content-Type": "application/json", "X-Note": "  héllo wörld  "}
    )
    # what the SDK hands to the HTTP stack: the UTF-8 bytes, as ISO-8859-1 text
    assert request.header_params["X-Note"] == "héllo wörld".encode().decode("iso-8859-1")
    assert verify_request(**request_args(request)).ak == "AKONE"
    decoded = dict(request.header_params, **{"X-Note": "héllo wörld"})
    assert verify_request(**request_args(request, headers=decoded)).ak == "AKONE"


# -- the canonical form equals the SDK's, for any path and query ---------------------------

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(segments=st.lists(_text, min_size=1, max_size=4))
def test_canonical_uri_matches_the_sdk(segments: list[str]) -> None:
    resource_path = "/v2/" + "/".join(quote(s, safe="") for s in segments)
    request = SdkRequest(resource_path=resource_path, query_params=[], header_params={})
    assert canonical_uri(resource_path) == Signer(
        BasicCredentials("a", "b")
    )._process_canonical_uri(request)


@settings(max_examples=200, deadline=None)
@given(pairs=st.lists(st.tuples(_text.filter(bool), _text), max_size=6))
def test_canonical_query_matches_the_sdk(pairs: list[tuple[str, str]]) -> None:
    request = SdkRequest(resource_path="/", query_params=list(pairs), header_params={})
    Signer.process_request_uri(request)
    sent = request.uri.partition("?")[2]  # what goes on the wire
    expected = Signer.process_canonical_query_string(
        SdkRequest(query_params=list(pairs), header_params={})
    )
    assert sent == expected
    assert canonical_query_string(sent) == expected
    assert canonical_query_string(pairs) == expected


def test_path_project_id() -> None:
    assert path_project_id("/v2/abc/migration-task") == "abc"
    assert path_project_id("/v2/abc") == "abc"
    assert path_project_id("/v2/") is None
    assert path_project_id("/health") is None
    assert path_project_id("/api/abc/x") is None
