"""What a run may skip. A developer's run skips a test whose corpus, server binary or
test package is missing, saying which; a run that requires everything (CI: the `CI`
environment variable, or `pytest --require-all`) fails such a test instead, so that a
green CI run is one in which every test ran."""

from __future__ import annotations

import os

import pytest

REQUIRE_ALL_OPTION = "--require-all"

# Fragments of the skip reasons that mean "something this machine should have is missing".
UNAVAILABLE = (
    "corpus not found",
    "no stream with consumer groups in the corpus",
    "the seed API page is not at",
    "is not on PATH",
    "is not installed",
    "package holds no",
    "could not import",
)


def requires_all(config: pytest.Config) -> bool:
    """Whether this run turns skips for missing things into failures."""
    return bool(config.getoption("require_all")) or os.environ.get("CI", "") not in ("", "0")


def unavailable(reason: str) -> bool:
    """Whether a skip with this reason was for something missing from the machine."""
    return any(fragment in reason for fragment in UNAVAILABLE)
