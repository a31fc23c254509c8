"""The HTTP service: the DCS migration-task API over the store and the task runner.

Every answer that is not a success has the DCS shape `{error_code, error_msg,
error_ext_msg}`: validation is done here from the raw body (never FastAPI's 422), and
unknown routes, wrong methods and internal errors are answered in the same shape.
Every route but the health check is signed with SDK-HMAC-SHA256 (`auth.py`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from sqlalchemy import exc as db_errors
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dcs_migration.api.auth import MAX_CLOCK_SKEW, AuthResult, verify_body, verify_head
from dcs_migration.api.errors import (
    DCS_INVALID_PARAMETER,
    DCS_JOB_FAILED,
    DcsError,
    error_body,
    invalid_parameter,
    replayed,
)
from dcs_migration.config import MAX_BODY_BYTES, Settings
from dcs_migration.sources.backup_store import BackupStore, make_backup_store
from dcs_migration.store import Store, open_store
from dcs_migration.tasks.backups import BackupRunner
from dcs_migration.tasks.buckets import Buckets
from dcs_migration.tasks.runner import TaskRunner

log = logging.getLogger(__name__)


class Service:
    """What the routes use: the store and the runner of one running service."""

    def __init__(self, settings: Settings) -> None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.store: Store = open_store(settings.database_url, settings.data_dir)
        self.files: BackupStore = make_backup_store(settings.data_dir)
        self.buckets = Buckets(
            self.store, settings.data_dir, object_store=settings.obs_endpoint is not None
        )
        self.runner = TaskRunner(
            self.store,
            settings.data_dir,
            self.files,
            self.buckets,
            networks=settings.allowed_networks,
            workers=settings.workers,
            database_url=settings.database_url,
        )
        self.backups = BackupRunner(
            self.store, self.files, settings.allowed_networks, workers=settings.workers
        )
        self.bodies = BodyBudget(settings.body_budget)

    def start(self) -> None:
        waiting = self.store.requeue_interrupted()
        interrupted = self.store.fail_interrupted(DCS_JOB_FAILED)
        if interrupted:
            log.warning("%d task(s) were running when the service stopped: FAILED", interrupted)
        self.backups.recover()
        self.runner.start()
        for task in waiting:
            self.runner.submit(task.project_id, task.task_id)

    def close(self) -> None:
        self.runner.shutdown()
        self.backups.shutdown()
        self.store.close()


def create_app(settings: Settings) -> FastAPI:
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title="dcs-migration",
        description="Import Redis backups into Redis: the DCS migration-task API.",
        version="2",
        lifespan=lifespan,
    )
    app.state.service = service
    if settings.public_url:
        app.add_middleware(PublicRedirects, public_url=settings.public_url)

    @app.exception_handler(DcsError)
    async def dcs_error(request: Request, exc: DcsError) -> JSONResponse:
        return JSONResponse(exc.to_body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
        err = invalid_parameter(f"{where or 'request'}: {first.get('msg', 'is invalid')}")
        return JSONResponse(err.to_body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "DCS.4800" if exc.status_code < 500 else DCS_JOB_FAILED
        message = "no such API" if exc.status_code == 404 else str(exc.detail)
        return JSONResponse(
            error_body(code, message), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(db_errors.SQLAlchemyError)
    async def database_error(request: Request, exc: db_errors.SQLAlchemyError) -> JSONResponse:
        # The database locked by another process, its disk full, its server down or
        # restarting: a 503 the client may retry, never a hang or a bare 500.
        why = _database_trouble(exc)
        if why is None:
            log.exception("internal error on %s %s", request.method, request.url.path)
            return JSONResponse(error_body(DCS_JOB_FAILED, "internal error"), status_code=500)
        log.warning(
            "database unavailable on %s %s: %s", request.method, request.url.path, exc.args[0]
        )
        return JSONResponse(
            error_body(DCS_JOB_FAILED, f"the service's database is unavailable ({why}): retry"),
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body(DCS_JOB_FAILED, "internal error"), status_code=500)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    from dcs_migration.api import routes_backups, routes_instances, routes_tasks

    app.include_router(routes_tasks.router)
    app.include_router(routes_instances.router)
    app.include_router(routes_backups.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _database_trouble(exc: Exception) -> str | None:
    """Why the database cannot be used now, for an error that says so (locked, full,
    unreachable); None for an error that is not about the database being available."""
    unavailable = (db_errors.OperationalError, db_errors.InterfaceError, db_errors.TimeoutError)
    invalidated = isinstance(exc, db_errors.DBAPIError) and exc.connection_invalidated
    if not isinstance(exc, unavailable) and not invalidated:
        return None
    if isinstance(exc, db_errors.TimeoutError):
        return "no database connection came free in time"
    text = str(getattr(exc, "orig", None) or exc).lower()
    if "locked" in text or "busy" in text:
        return "it is locked by another process"
    if "full" in text or "no space" in text or "too large" in text or "quota" in text:
        return "its disk is full"
    if "i/o error" in text:
        return "its disk cannot be written"
    return "it cannot be reached"


# Request bodies are validated from the raw body (to answer in the DCS form), so the
# document is told about them here: route name -> body model.
REQUEST_BODIES: dict[str, type[BaseModel]] = {}


def request_body_model(
    model: type[BaseModel],
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a route as taking `model` as its JSON body (for /openapi.json)."""

    def mark(route: Callable[..., Any]) -> Callable[..., Any]:
        REQUEST_BODIES[route.__name__] = model
        return route

    return mark


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    models = list(dict.fromkeys(REQUEST_BODIES.values()))
    _, definitions = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(definitions.get("$defs", {}))
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)  # errors are answered in the DCS form, never FastAPI's
    # Every error is answered in the DCS form, with the statuses the managed service's API
    # reference lists for each of its operations (and 408 for a body that does not come,
    # 503 for a database that cannot be used).
    components["DcsError"] = {
        "title": "DcsError",
        "type": "object",
        "properties": {
            "error_code": {"type": "string", "title": "Error Code"},
            "error_msg": {"type": "string", "title": "Error Msg"},
            "error_ext_msg": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "required": ["error_code", "error_msg", "error_ext_msg"],
        "additionalProperties": False,
    }
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/DcsError"}}}
    statuses = {
        "400": "Invalid request: error_msg names the parameter at fault",
        "401": "Authentication failed: a missing, wrong or stale signature (APIGW.0301)",
        "403": "Request rejected: the access key belongs to another project (APIGW.0302)",
        "404": "The requested resource does not exist in this project",
        "408": "The request body was not received in time",
        "500": "Internal service error",
        "503": "The service's database is unavailable, or it is receiving too many request "
        "bodies at once: retry (Retry-After)",
    }
    # A task id is one this service hands out (anything else is a 400, DCS.4070).
    task_id = {
        "type": "string",
        "title": "Task Id",
        "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    }
    deleted = components.get("DeleteMigrationTasksBody", {}).get("properties", {})
    if "task_id_list" in deleted:
        deleted["task_id_list"]["items"] = {k: v for k, v in task_id.items() if k != "title"}
    for path in schema["paths"].values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
            for status, description in statuses.items():
                operation["responses"].setdefault(
                    status, {"description": description, "content": error}
                )
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") == "task_id":
                    parameter["schema"] = dict(task_id)
            model = REQUEST_BODIES.get(operation.get("operationId", "").split("_v2_")[0])
            if model is not None:
                operation["requestBody"] = {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{model.__name__}"}
                        }
                    },
                }
    app.openapi_schema = schema
    return schema


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def public_base(request: Request) -> str:
    """The base URL of what the service hands out (download links), without a final
    ``/``: `DCS_MIGRATION_PUBLIC_URL`, else the request's own (its Host header, and the
    scheme a proxy on this host says in X-Forwarded-Proto)."""
    configured = service_of(request).settings.public_url
    return configured or str(request.base_url).rstrip("/")


class PublicRedirects:
    """ASGI middleware: a redirect (the router's, to the path with or without its final
    ``/``) points at `public_url` rather than at the host the request named."""

    def __init__(self, app: ASGIApp, public_url: str) -> None:
        self.app = app
        self.public_url = public_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_public(message: Message) -> None:
            if message["type"] == "http.response.start" and 300 <= message["status"] < 400:
                message = {**message, "headers": self._public(message.get("headers", []))}
            await send(message)

        await self.app(scope, receive, send_public)

    def _public(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        out = []
        for name, value in headers:
            if name.lower() == b"location":
                target = urlsplit(value.decode("latin-1"))
                where = urlunsplit(("", "", target.path, target.query, target.fragment))
                value = (self.public_url + where).encode("latin-1")
            out.append((name, value))
        return out


class BodyBudget:
    """The bytes of request bodies being read or held, all requests of the process together.

    A body takes its declared Content-Length (a chunked one, what has come so far) before
    it is read, and gives it back once its request is answered; a body that does not fit
    is refused with a 503 instead of read. Only the event loop touches it.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size


def _too_busy() -> DcsError:
    return DcsError(
        503,
        DCS_JOB_FAILED,
        "the service is receiving too many request bodies at once: retry",
        headers={"Retry-After": "1"},
    )


@asynccontextmanager
async def request_body(request: Request) -> AsyncIterator[bytes]:
    """The raw body, within the process' body budget, refused over 12 MB before it is read
    whole, and all in within a time limit.

    A client that sends its headers and then stops, or trickles the body, gets a 408
    rather than holding its request open: the whole body must come within
    `DCS_MIGRATION_BODY_TIMEOUT` seconds (default 30) of its start, however it is cut.
    A client that leaves before its body is all in is a 400 that nobody reads, not an
    internal error with its traceback logged. The body's share of the budget is held
    until the block ends.
    """
    service = service_of(request)
    budget, timeout = service.bodies, service.settings.body_timeout
    held = 0
    try:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isascii() and declared.isdigit():
            if int(declared) > MAX_BODY_BYTES:  # h11 allows 20 digits at most
                raise invalid_parameter(f"request body: larger than {MAX_BODY_BYTES} bytes")
            if not budget.take(int(declared)):
                raise _too_busy()
            held = int(declared)
        chunks = []
        size = 0
        stream = request.stream()
        try:
            async with asyncio.timeout(timeout):
                async for chunk in stream:
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        raise invalid_parameter(f"request body: larger than {MAX_BODY_BYTES} bytes")
                    if size > held:  # chunked: take what came
                        if not budget.take(size - held):
                            raise _too_busy()
                        held = size
                    chunks.append(chunk)
        except TimeoutError:
            raise DcsError(
                408,
                DCS_INVALID_PARAMETER,
                f"Invalid parameter: request body: not received within {timeout:g} seconds",
            ) from None
        except ClientDisconnect:  # nobody to answer: an error, but not the service's
            raise invalid_parameter("request body: the client left before sending it all") from None
        finally:
            await stream.aclose()
        yield b"".join(chunks)
    finally:
        budget.give(held)


IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def signed(request: Request) -> AsyncIterator[AuthResult]:
    """The signer of the request (project and AK), or a 401/403 DCS error.

    Everything of the signature that needs no body is checked before the body is read
    (an unsigned or badly signed request is refused with its body unread); the body's
    hash after. A signature of a call that changes something (POST, PUT, DELETE) is
    accepted once: the store remembers it for as long as its date can be accepted.
    """
    service = service_of(request)
    store = service.store
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    head = await run_in_threadpool(
        verify_head,
        request.method,
        raw_path.decode("latin-1"),
        request.scope.get("query_string", b"").decode("latin-1"),
        request.headers.items(),  # every value of a repeated header
        lambda ak: _key(store, ak),
        datetime.now(UTC),
    )
    async with request_body(request) as body:
        request.state.body = body
        result = verify_body(head, body)
        if request.method not in IDEMPOTENT_METHODS:
            await run_in_threadpool(_first_use, store, result)
        yield result


def _first_use(store: Store, result: AuthResult) -> None:
    """Remember the signature of a call that changes something; refuse it if it was seen."""
    assert result.signed_at is not None
    # Kept past the end of its date window by that window again, for API processes whose
    # clocks differ (several may share one database).
    keep_until = result.signed_at + 2 * MAX_CLOCK_SKEW
    if not store.remember_signature(result.signature, keep_until):
        raise replayed()


def _key(store: Store, ak: str) -> tuple[str, str] | None:
    found = store.secret_for(ak)
    return None if found is None else (found.project_id, found.sk)


Signed = Annotated[AuthResult, Depends(signed)]


def body_of(request: Request) -> bytes:
    body: bytes = request.state.body
    return body


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def json_model(model: Any) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(mode="json", exclude_none=False)
    return data
