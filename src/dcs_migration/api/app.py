"""The HTTP service: the DCS migration-task API over the store and the task runner.

Every answer that is not a success has the DCS shape `{error_code, error_msg,
error_ext_msg}`: validation is done here from the raw body (never FastAPI's 422), and
unknown routes, wrong methods and internal errors are answered in the same shape.
Every route but the health check is signed with SDK-HMAC-SHA256 (`auth.py`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from dcs_migration.api.auth import AuthResult, verify_request
from dcs_migration.api.errors import DCS_JOB_FAILED, DcsError, error_body, invalid_parameter
from dcs_migration.config import Settings
from dcs_migration.sources.backup_store import BackupStore, make_backup_store
from dcs_migration.store import Store, open_store
from dcs_migration.tasks.backups import BackupRunner
from dcs_migration.tasks.runner import TaskRunner

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 12 << 20


class Service:
    """What the routes use: the store and the runner of one running service."""

    def __init__(self, settings: Settings) -> None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.store: Store = open_store(settings.database_url, settings.data_dir)
        self.files: BackupStore = make_backup_store(settings.data_dir)
        self.runner = TaskRunner(
            self.store, settings.data_dir, self.files, workers=settings.workers
        )
        self.backups = BackupRunner(self.store, self.files, workers=settings.workers)

    def start(self) -> None:
        interrupted = self.store.fail_interrupted()
        if interrupted:
            log.warning("%d task(s) were running when the service stopped: FAILED", interrupted)
        self.backups.recover()
        self.runner.start()

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

    @app.exception_handler(DcsError)
    async def dcs_error(request: Request, exc: DcsError) -> JSONResponse:
        return JSONResponse(exc.to_body(), status_code=exc.status)

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
        return JSONResponse(error_body(code, message), status_code=exc.status_code)

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
    for path in schema["paths"].values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
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


async def request_body(request: Request) -> bytes:
    """The raw body, refused over 12 MB before it is read whole."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise invalid_parameter(f"request body: larger than {MAX_BODY_BYTES} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise invalid_parameter(f"request body: larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def signed(request: Request) -> AuthResult:
    """The signer of the request (project and AK), or a 401/403 DCS error."""
    body = await request_body(request)
    request.state.body = body
    store = service_of(request).store
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    return verify_request(
        request.method,
        raw_path.decode("latin-1"),
        request.scope.get("query_string", b"").decode("latin-1"),
        dict(request.headers),
        body,
        lambda ak: _key(store, ak),
        datetime.now(UTC),
    )


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
