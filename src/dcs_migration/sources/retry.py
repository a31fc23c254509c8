"""Retrying a request while it fails transiently: one policy type and one loop (tenacity's).

Reads and writes of the object store (and the service's checks of a bucket) retry the
same way: at most `attempts` tries in a row, sleeping a jittered, doubling delay between
them. What counts as transient is the caller's to say; what a final failure means (an
error naming the bucket and key, how many tries it took) is the caller's too, so the
loop hands back the last error and how it ended instead of raising its own.

tenacity is imported by the first call that retries: it brings asyncio along, which an
import of local files (and the command line's start-up) has no use for.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from tenacity import RetryCallState

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient failures are retried: `attempts` tries in a row at most, sleeping a
    jittered, doubling delay (from `base_delay` up to `max_delay` seconds) between them."""

    attempts: int = 6
    base_delay: float = 0.25
    max_delay: float = 8.0

    def delay(self, failures: int) -> float:
        """The pause after the `failures`-th failure in a row (1 for the first)."""
        cap = min(self.max_delay, self.base_delay * 2 ** (failures - 1))
        return random.uniform(cap / 2, cap)

    def _wait(self, state: RetryCallState) -> float:
        return self.delay(state.attempt_number)


DEFAULT_RETRY = RetryPolicy()


class RetriesFailed(Exception):
    """A request failed for good: `last` is its last error, `attempts` the tries made,
    `exhausted` whether every one failed transiently (else the last did not)."""

    def __init__(self, last: Exception, attempts: int, *, exhausted: bool) -> None:
        super().__init__(str(last))
        self.last = last
        self.attempts = attempts
        self.exhausted = exhausted


def call_with_retries(
    request: Callable[[], T], policy: RetryPolicy, transient: Callable[[BaseException], bool]
) -> T:
    """`request()`, tried again while it raises what `transient` accepts, at most
    `policy.attempts` times in all; RetriesFailed once it fails for good."""
    from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt

    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=policy._wait,
        retry=retry_if_exception(transient),
    )
    try:
        return retrying(request)
    except RetryError as gave_up:
        last = gave_up.last_attempt.exception()
        assert isinstance(last, Exception)
        raise RetriesFailed(last, policy.attempts, exhausted=True) from last
    except Exception as exc:
        attempts = int(retrying.statistics.get("attempt_number", 1))
        raise RetriesFailed(exc, attempts, exhausted=False) from exc
