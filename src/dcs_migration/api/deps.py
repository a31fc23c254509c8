"""What the routers depend on: the service's parts (store, settings, executor, use-cases),
the signed caller, and the request body read within its bounds.

Routers import these, never `app.py`, which imports the routers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from dcs_migration.api.auth import MAX_CLOCK_SKEW, AuthResult, verify_body, verify_head
from dcs_migration.api.errors import (
    DCS_INVALID_PARAMETER,
    DCS_JOB_FAILED,
    DcsError,
    invalid_parameter,
    refused,
    replayed,
)
from dcs_migration.api.runtime import Service
from dcs_migration.config import MAX_BODY_BYTES, Settings
from dcs_migration.store import Store
from dcs_migration.tasks.backups import BackupRunner
from dcs_migration.tasks.buckets import Buckets
from dcs_migration.tasks.executor import Executor
from dcs_migration.tasks.online_service import OnlineTasks
from dcs_migration.tasks.refusals import Refused
from dcs_migration.tasks.service import TaskService

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


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def public_base(request: Request) -> str:
    """The base URL of what the service hands out (download links), without a final
    ``/``: `DCS_MIGRATION_PUBLIC_URL`, else the request's own (its Host header, and the
    scheme a proxy on this host says in X-Forwarded-Proto)."""
    configured = service_of(request).settings.public_url
    return configured or str(request.base_url).rstrip("/")


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
    accepted once: the store remembers it for as long as its date can be accepted. A call
    the service failed to carry out (a 5xx: its database down mid-call, a bug) did
    nothing, so its signature is forgotten again: the client's retry of the same bytes
    is the retry a 503 asks for, not a replay.
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
        remembered = request.method not in IDEMPOTENT_METHODS
        if remembered:
            await run_in_threadpool(_first_use, store, result)
        try:
            yield result
        except Exception as exc:
            if remembered and _failed_here(exc):
                await run_in_threadpool(store.forget_signature, result.signature)
            raise


def _first_use(store: Store, result: AuthResult) -> None:
    """Remember the signature of a call that changes something; refuse it if it was seen."""
    assert result.signed_at is not None
    # Kept past the end of its date window by that window again, for API processes whose
    # clocks differ (several may share one database).
    keep_until = result.signed_at + 2 * MAX_CLOCK_SKEW
    if not store.remember_signature(result.signature, keep_until):
        raise replayed()


def _failed_here(exc: Exception) -> bool:
    """Whether a call ended in an error of the service's own (answered 5xx), not in an
    answer to what the request asked (4xx), which stands."""
    if isinstance(exc, Refused):
        exc = refused(exc)
    if isinstance(exc, DcsError):
        return exc.status >= 500
    if isinstance(exc, StarletteHTTPException):
        return exc.status_code >= 500
    return not isinstance(exc, RequestValidationError)


def _key(store: Store, ak: str) -> tuple[str, str] | None:
    found = store.secret_for(ak)
    return None if found is None else (found.project_id, found.sk)


Signed = Annotated[AuthResult, Depends(signed)]


def body_of(request: Request) -> bytes:
    body: bytes = request.state.body
    return body


# The parts of the service, as dependencies (coroutines: taken on the event loop, with no
# trip to the thread pool).


async def store_of(request: Request) -> Store:
    return service_of(request).store


async def settings_of(request: Request) -> Settings:
    return service_of(request).settings


async def executor_of(request: Request) -> Executor:
    return service_of(request).executor


async def tasks_of(request: Request) -> TaskService:
    return service_of(request).tasks


async def backups_of(request: Request) -> BackupRunner:
    return service_of(request).backups


async def online_of(request: Request) -> OnlineTasks:
    return service_of(request).online


async def buckets_of(request: Request) -> Buckets:
    return service_of(request).buckets


StoreDep = Annotated[Store, Depends(store_of)]
SettingsDep = Annotated[Settings, Depends(settings_of)]
ExecutorDep = Annotated[Executor, Depends(executor_of)]
TasksDep = Annotated[TaskService, Depends(tasks_of)]
BackupsDep = Annotated[BackupRunner, Depends(backups_of)]
OnlineDep = Annotated[OnlineTasks, Depends(online_of)]
BucketsDep = Annotated[Buckets, Depends(buckets_of)]
