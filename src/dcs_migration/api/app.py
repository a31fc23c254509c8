"""The HTTP service: the DCS migration-task API over the store and the executor.

Every answer that is not a success has the DCS shape `{error_code, error_msg,
error_ext_msg}`: validation is done here from the raw body (never FastAPI's 422), and
unknown routes, wrong methods and internal errors are answered in the same shape.
Every route but the health check and the console's static files (`routes_console.py`)
is signed with SDK-HMAC-SHA256 (`auth.py`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic.json_schema import models_json_schema
from sqlalchemy import exc as db_errors
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dcs_migration.api import (
    routes_backups,
    routes_buckets,
    routes_console,
    routes_instances,
    routes_online,
    routes_tasks,
)
from dcs_migration.api.deps import REQUEST_BODIES
from dcs_migration.api.errors import (
    APIGW_AUTH_FAILED,
    APIGW_NOT_AUTHORIZED,
    DCS_INVALID_PARAMETER,
    DCS_JOB_FAILED,
    DcsError,
    error_body,
    invalid_parameter,
    refused,
)
from dcs_migration.api.runtime import Service
from dcs_migration.config import Settings
from dcs_migration.tasks.refusals import Refused

log = logging.getLogger(__name__)


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

    @app.exception_handler(Refused)
    async def refused_use_case(request: Request, exc: Refused) -> JSONResponse:
        err = refused(exc)
        return JSONResponse(err.to_body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
        err = invalid_parameter(f"{where or 'request'}: {first.get('msg', 'is invalid')}")
        return JSONResponse(err.to_body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = DCS_INVALID_PARAMETER if exc.status_code < 500 else DCS_JOB_FAILED
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

    app.include_router(routes_tasks.router)
    app.include_router(routes_online.router)
    app.include_router(routes_instances.router)
    app.include_router(routes_backups.router)
    app.include_router(routes_buckets.router)
    app.add_route("/console", routes_console.console_root, include_in_schema=False)
    app.mount("/console", routes_console.ConsoleFiles(), name="console")
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
        "401": f"Authentication failed: a missing, wrong or stale signature ({APIGW_AUTH_FAILED})",
        "403": "Request rejected: the access key belongs to another project "
        f"({APIGW_NOT_AUTHORIZED})",
        "404": "The requested resource does not exist in this project",
        "408": "The request body was not received in time",
        "500": "Internal service error",
        "503": "The service's database is unavailable, or it is receiving too many request "
        "bodies at once: retry (Retry-After)",
    }
    # A task id is one this service hands out (anything else is a 400: the id's format).
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
