"""DCS error codes, the error exception of the HTTP API, and readable validation messages.

Every error answer of the API has the managed service's shape::

    {"error_code": "DCS.4800", "error_msg": "...", "error_ext_msg": null}

`DcsError` carries the HTTP status with the code and message; the app turns it into that
body. `validation_message` turns a pydantic `ValidationError` into a message that names
each offending field by its path in the body (``backup_files.files[0].file_name``) and
says what is wrong with it, without echoing the submitted value (it may be a password).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from dcs_migration.tasks.refusals import Refusal, Refused

if TYPE_CHECKING:  # the codes are imported by task processes, which need no pydantic
    from pydantic import ValidationError
    from pydantic_core import PydanticCustomError

# -- codes of the managed service, reused with the same meaning -----------------------
DCS_INVALID_PARAMETER: Final = "DCS.4800"
"""400: a parameter is missing, of the wrong type or value; the message names it."""
DCS_EMPTY_BODY: Final = "DCS.4004"
"""400: the request needs a body and has none."""
DCS_INVALID_TASK_ID_FORMAT: Final = "DCS.4070"
"""400: a task id that is not of the form this service hands out."""
DCS_INVALID_MIGRATION_TASK_ID: Final = "DCS.4855"
"""400: a migration task id that cannot name a task (e.g. in a batch request)."""
DCS_TASK_NOT_FOUND: Final = "DCS.4133"
"""404: no such task in this project."""
DCS_TASK_RUNNING: Final = "DCS.4017"
"""400: the task is still running (e.g. deleting a running task: stop it first)."""
DCS_STATE_NOT_ALLOWED: Final = "DCS.4957"
"""400: the operation is not allowed in the task's current state."""
DCS_JOB_FAILED: Final = "DCS.4842"
"""500: the job could not be executed."""
DCS_INSTANCE_NOT_FOUND: Final = "DCS.4001"
"""The instance does not exist (in this project)."""
DCS_BACKUP_NOT_SUCCEEDED: Final = "DCS.4087"
"""400: the backup is not in the ``succeed`` state."""
DCS_INSTANCE_BACKING_UP: Final = "DCS.4096"
"""400: the instance is being backed up."""
DCS_INSTANCE_RESTORING: Final = "DCS.4097"
"""400: the instance is being restored."""

# -- codes of the API gateway in front of the managed service ------------------------
APIGW_AUTH_FAILED: Final = "APIGW.0301"
"""401: missing, malformed or wrong request signature, unknown access key, stale date."""
APIGW_NOT_AUTHORIZED: Final = "APIGW.0302"
"""403: a valid access key used on a project it does not belong to."""

DEFAULT_STATUS: Final[dict[str, int]] = {
    DCS_INVALID_PARAMETER: 400,
    DCS_EMPTY_BODY: 400,
    DCS_INVALID_TASK_ID_FORMAT: 400,
    DCS_INVALID_MIGRATION_TASK_ID: 400,
    DCS_TASK_NOT_FOUND: 404,
    DCS_TASK_RUNNING: 400,
    DCS_STATE_NOT_ALLOWED: 400,
    DCS_JOB_FAILED: 500,
    DCS_BACKUP_NOT_SUCCEEDED: 400,
    DCS_INSTANCE_BACKING_UP: 400,
    DCS_INSTANCE_RESTORING: 400,
    APIGW_AUTH_FAILED: 401,
    APIGW_NOT_AUTHORIZED: 403,
}
"""The HTTP status each code is answered with unless a caller says otherwise."""


def error_body(error_code: str, error_msg: str) -> dict[str, str | None]:
    """The JSON body of an error answer, in the managed service's shape."""
    return {"error_code": error_code, "error_msg": error_msg, "error_ext_msg": None}


class DcsError(Exception):
    """An error answer of the API: HTTP status, DCS (or gateway) error code, message."""

    def __init__(
        self,
        status: int,
        error_code: str,
        error_msg: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{error_code}: {error_msg}")
        self.status = status
        self.error_code = error_code
        self.error_msg = error_msg
        self.headers = headers  # of the answer (e.g. Retry-After)

    @classmethod
    def of(cls, error_code: str, error_msg: str) -> DcsError:
        """An error with the default status of its code (400 for a code not listed)."""
        return cls(DEFAULT_STATUS.get(error_code, 400), error_code, error_msg)

    def to_body(self) -> dict[str, str | None]:
        return error_body(self.error_code, self.error_msg)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.error_code!r}, {self.error_msg!r})"


REFUSALS: Final[dict[Refusal, tuple[int, str]]] = {
    Refusal.INVALID_PARAMETER: (400, DCS_INVALID_PARAMETER),
    Refusal.INVALID_TASK_ID: (400, DCS_INVALID_TASK_ID_FORMAT),
    Refusal.TASK_NOT_FOUND: (404, DCS_TASK_NOT_FOUND),
    Refusal.INSTANCE_NOT_FOUND: (404, DCS_INSTANCE_NOT_FOUND),
    Refusal.BACKUP_NOT_SUCCEEDED: (400, DCS_BACKUP_NOT_SUCCEEDED),
    Refusal.TASK_RUNNING: (400, DCS_TASK_RUNNING),
    Refusal.STATE_NOT_ALLOWED: (400, DCS_STATE_NOT_ALLOWED),
    # A missing bucket has the code a task naming one gets (backup_files.bucket_name).
    Refusal.BUCKET_NOT_FOUND: (404, DCS_INVALID_PARAMETER),
    Refusal.STORE_UNAVAILABLE: (503, DCS_JOB_FAILED),
}
"""The HTTP status and code each refusal of a task use-case is answered with."""


def refused(exc: Refused) -> DcsError:
    """The error answer of a refused task use-case."""
    if exc.refusal is Refusal.INVALID_PARAMETER:
        return invalid_parameter(exc.message)
    status, code = REFUSALS[exc.refusal]
    # What is unavailable now may be asked again, as a 503 of the database says.
    headers = {"Retry-After": "1"} if status == 503 else None
    return DcsError(status, code, exc.message, headers=headers)


def task_outcomes(
    task_ids: Sequence[str], outcomes: Sequence[Refused | None]
) -> list[dict[str, Any]]:
    """A batch call's answer per task (`{task_id, result, error_code?, error_msg?}`, the
    shape of the SDK's batch-stop and batch-restart results): "success", or "failed"
    with the error its refusal answers alone."""
    results: list[dict[str, Any]] = []
    for task_id, why in zip(task_ids, outcomes, strict=True):
        if why is None:
            results.append(
                {"task_id": task_id, "result": "success", "error_code": None, "error_msg": None}
            )
        else:
            error = refused(why)
            results.append(
                {
                    "task_id": task_id,
                    "result": "failed",
                    "error_code": error.error_code,
                    "error_msg": error.error_msg,
                }
            )
    return results


def invalid_parameter(message: str) -> DcsError:
    """A DCS.4800 (400) error; `message` should name the parameter."""
    return DcsError(400, DCS_INVALID_PARAMETER, f"Invalid parameter: {message}")


def replayed() -> DcsError:
    """A 401 (APIGW.0301) for a signed call that changes something, sent again: its
    signature was already used (a captured request replayed, or an identical call sent
    again within the same second)."""
    return DcsError(
        401,
        APIGW_AUTH_FAILED,
        "Incorrect IAM authentication information: this signed request was already "
        "received, and a request that changes something is accepted once: sign it again "
        "(an identical request signed within the same second has the same signature)",
    )


def empty_body() -> DcsError:
    """A DCS.4004 (400) error for a request that needs a body and sent none."""
    return DcsError(400, DCS_EMPTY_BODY, "The request body is empty")


# -- validation messages -------------------------------------------------------------

RULE_ERROR: Final = "dcs_rule"
"""Error type of the rules in `schemas`: its context holds ``reason`` and maybe ``field``."""


def rule_error(reason: str, field: str | None = None) -> PydanticCustomError:
    """A validation error for a rule of the API.

    `reason` completes a sentence whose subject is the field (``"is required when ..."``,
    ``"must not ..."``). Raised from a model validator, `field` names the sub-field the
    rule is about, so the message points at it rather than at the enclosing object.
    """
    from pydantic_core import PydanticCustomError

    ctx: dict[str, Any] = {"reason": reason}
    if field is not None:
        ctx["field"] = field
    return PydanticCustomError(RULE_ERROR, "{reason}", ctx)


_TYPE_REASONS: Final[dict[str, str]] = {
    "missing": "is required",
    "string_type": "must be a string",
    "string_unicode": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "bool_type": "must be a boolean",
    "bool_parsing": "must be a boolean",
    "list_type": "must be an array",
    "tuple_type": "must be an array",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dataclass_type": "must be an object",
    "none_required": "must be null",
    "string_pattern_mismatch": "has an invalid format",
}

# pydantic adds the union member or validator tag to an error's location; such items
# never look like a JSON field name of this API.
_TAG_CHARS: Final = frozenset("[]()-,' ")


def _is_tag(item: str) -> bool:
    return any(ch in _TAG_CHARS for ch in item) or item in {
        "str",
        "int",
        "bool",
        "float",
        "list",
        "dict",
        "none",
        "is-instance",
    }


def field_path(loc: Sequence[int | str]) -> str:
    """``('backup_files', 'files', 0, 'file_name')`` -> ``backup_files.files[0].file_name``."""
    out = ""
    for item in loc:
        if isinstance(item, int):
            out += f"[{item}]"
        elif not _is_tag(item):
            out += f".{item}" if out else item
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _reason(err: Any) -> str:
    kind: str = err["type"]
    ctx: dict[str, Any] = err.get("ctx") or {}
    if kind == RULE_ERROR:
        return str(ctx.get("reason", "is invalid"))
    if kind in _TYPE_REASONS:
        return _TYPE_REASONS[kind]
    if kind in ("literal_error", "enum"):
        expected = str(ctx.get("expected", "")).replace(" or ", ", ")
        return f"must be one of {expected}"
    if kind == "string_too_short":
        n = int(ctx.get("min_length", 1))
        return "must not be empty" if n <= 1 else f"must be at least {_plural(n, 'character')}"
    if kind == "string_too_long":
        return f"must be at most {_plural(int(ctx.get('max_length', 0)), 'character')}"
    if kind == "too_short":
        n = int(ctx.get("min_length", 1))
        return "must not be empty" if n <= 1 else f"must have at least {_plural(n, 'item')}"
    if kind == "too_long":
        return f"must have at most {_plural(int(ctx.get('max_length', 0)), 'item')}"
    bounds = {
        "greater_than": ("gt", "greater than"),
        "greater_than_equal": ("ge", "at least"),
        "less_than": ("lt", "less than"),
        "less_than_equal": ("le", "at most"),
    }
    if kind in bounds:
        key, words = bounds[kind]
        return f"must be {words} {ctx.get(key)}"
    if kind == "json_invalid":
        return "is not valid JSON"
    msg = str(err.get("msg", "is invalid"))
    if kind == "value_error" and msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    return f"is invalid ({msg[:1].lower()}{msg[1:]})"


def validation_messages(exc: ValidationError) -> list[str]:
    """One sentence per error, each naming the field path and what is wrong with it."""
    out: list[str] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc: tuple[int | str, ...] = tuple(err["loc"])
        ctx = err.get("ctx") or {}
        if err["type"] == RULE_ERROR and ctx.get("field"):
            loc = (*loc, str(ctx["field"]))
        path = field_path(loc) or "request body"
        sentence = f"{path} {_reason(err)}"
        if sentence not in out:
            out.append(sentence)
    return out


def validation_message(exc: ValidationError, *, limit: int = 5) -> str:
    """The errors of `exc` as one message (at most `limit` of them, then a count)."""
    parts = validation_messages(exc)
    text = "; ".join(parts[:limit])
    if len(parts) > limit:
        text += f"; and {len(parts) - limit} more"
    return text


def from_validation_error(exc: ValidationError) -> DcsError:
    """The DCS.4800 (400) error for a body that failed validation."""
    return invalid_parameter(validation_message(exc))
