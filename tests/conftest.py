"""Fixtures starting real servers, the markers that sort tests into tiers, and the rule
that a run requiring everything fails where others skip.

Every server fixture runs the flavour that the `flavour` fixture gives: the system's
redis-server unless a test parametrizes it (indirectly) with flavour ids, e.g.
`@pytest.mark.parametrize("flavour", every_flavour(), indirect=True)` or
`@pytest.mark.parametrize("flavour", ["redis-6.2"], indirect=True)`
(`every_flavour` and the other helpers are in `tests.support`).

Tiers: a test is marked `redis`, `s3`, `postgres`, `service`, `browser` or `slow` by what
it needs (by hand, or below by the fixtures it uses); a test with none of them is
`process_free`, the tier `make unit` runs.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from dcs_migration.store import Store, open_store
from tests.support.browser import (
    SCREENSHOTS_OPTION,
    desktop_context,
    failure_name,
    keep_screenshots_in,
    launch,
    screenshot,
    sync_playwright,
)
from tests.support.flavours import RedisServerFactory, flavour_or_skip
from tests.support.postgres import create_database
from tests.support.required import REQUIRE_ALL_OPTION, requires_all, unavailable
from tests.support.servers import FLAVOUR_IDS, RedisServer, ServerFlavour

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from tests.support.cluster import RedisCluster

# What a test needs when it uses one of these fixtures (directly or through another). A
# test module adds its own fixtures in a `FIXTURE_MARKERS` dict of the same form; a module
# whose every test needs a thing says so in `pytestmark`.
MARKER_OF_FIXTURE = {
    "flavour": "redis",
    "postgres_url": "postgres",
    "browser": "browser",
}
# The markers of tests that start processes or take long; a test with none is process-free.
TIER_MARKERS = ("redis", "s3", "postgres", "service", "browser", "slow")
# The console messages of a test's page, for its report should it fail.
CONSOLE_MESSAGES = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        REQUIRE_ALL_OPTION,
        action="store_true",
        dest="require_all",
        help="fail, rather than skip, tests whose corpus, server or package is missing "
        "(also when the CI environment variable is set)",
    )
    parser.addoption(
        SCREENSHOTS_OPTION,
        metavar="DIR",
        dest="console_screenshots",
        help="where the browser tests save their screenshots (default: under pytest's "
        "base temporary directory; `make screenshots` gives docs/console)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by the fixtures it uses, then mark the rest `process_free` (before
    `-m` selects)."""
    for item in items:
        module = getattr(item, "module", None)
        markers = {**MARKER_OF_FIXTURE, **getattr(module, "FIXTURE_MARKERS", {})}
        for name in getattr(item, "fixturenames", ()):
            marker = markers.get(name)
            if marker is not None:
                item.add_marker(marker)
        if not any(item.get_closest_marker(m) for m in TIER_MARKERS):
            item.add_marker("process_free")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Under `--require-all` (or CI) a skip for something missing is a failure; a failed
    test's page leaves a screenshot and its console messages in the report."""
    report = yield
    if report.when == "call" and report.failed:
        page = getattr(item, "funcargs", {}).get("page")
        if page is not None:
            report.sections.extend(page_sections(item, page))
    if report.skipped and not hasattr(report, "wasxfail") and requires_all(item.config):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        if unavailable(reason):
            report.outcome = "failed"
            report.longrepr = f"required in this run ({REQUIRE_ALL_OPTION} or CI): {reason}"
    return report


def page_sections(item: pytest.Item, page: Page) -> list[tuple[str, str]]:
    """The report sections of a failed test's page: its screenshot and console."""
    try:
        shot = f"saved to {screenshot(page, failure_name(item.nodeid))}"
    except Exception as exc:  # a crashed page still has its console messages
        shot = f"none taken: {exc}"
    messages = item.stash.get(CONSOLE_MESSAGES, [])
    return [
        (f"page {page.url}: screenshot", shot),
        ("page console", "\n".join(messages) or "(no messages)"),
    ]


@pytest.fixture
def flavour(request: pytest.FixtureRequest) -> ServerFlavour:
    """The server build the server fixtures run (a flavour id as an indirect parameter;
    the system's redis-server by default); skipped when it is not installed."""
    return flavour_or_skip(getattr(request, "param", FLAVOUR_IDS[0]))


@pytest.fixture
def redis_server(flavour: ServerFlavour) -> Iterator[RedisServerFactory]:
    """`redis_server(*args, rdb=None)`: a started RedisServer of the test's flavour; all
    are stopped at teardown.

    `args` are extra redis-server arguments; `rdb` is a file the server loads at start;
    `build` a flavour id for this server alone (a source of one version, a target of
    another).
    """
    started: list[RedisServer] = []

    def start(
        *args: str, rdb: Path | None = None, dbfilename: str = "dump.rdb", build: str | None = None
    ) -> RedisServer:
        chosen = flavour if build is None else flavour_or_skip(build)
        server = RedisServer(*args, rdb=rdb, dbfilename=dbfilename, flavour=chosen)
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def redis_cluster(flavour: ServerFlavour) -> Iterator[RedisCluster]:
    """A started three-master cluster of the test's flavour, stopped at teardown."""
    from tests.support.cluster import RedisCluster

    with RedisCluster(flavour=flavour) as cluster:
        yield cluster


class SharedServers:
    """Servers and clusters started once per flavour and shared by a module's tests."""

    def __init__(self) -> None:
        self._servers: dict[ServerFlavour, RedisServer] = {}
        self._clusters: dict[ServerFlavour, RedisCluster] = {}

    def server(self, flavour: ServerFlavour) -> RedisServer:
        if flavour not in self._servers:
            self._servers[flavour] = RedisServer(flavour=flavour).start()
        return self._servers[flavour]

    def cluster(self, flavour: ServerFlavour) -> RedisCluster:
        from tests.support.cluster import RedisCluster

        if flavour not in self._clusters:
            self._clusters[flavour] = RedisCluster(flavour=flavour).start()
        return self._clusters[flavour]

    def stop(self) -> None:
        for server in self._servers.values():
            server.stop()
        for cluster in self._clusters.values():
            cluster.stop()


@pytest.fixture(scope="module")
def _shared() -> Iterator[SharedServers]:
    shared = SharedServers()
    try:
        yield shared
    finally:
        shared.stop()


@pytest.fixture
def shared_cluster(flavour: ServerFlavour, _shared: SharedServers) -> RedisCluster:
    """One three-master cluster per flavour for a module's tests; each test empties it
    first with `emptied(cluster)`."""
    return _shared.cluster(flavour)


@pytest.fixture
def shared_server(flavour: ServerFlavour, _shared: SharedServers) -> RedisServer:
    """One server per flavour for a module's tests, emptied (keys and functions) for
    each test."""
    server = _shared.server(flavour)
    client = redis.Redis(port=server.port)
    try:
        # A failed import may have left commands unread in its connection, which the
        # server would run before it notices the close: end every other connection first.
        client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")  # type: ignore[no-untyped-call]
        client.flushall()
        if flavour.version >= (7,):
            client.execute_command("FUNCTION", "FLUSH")  # type: ignore[no-untyped-call]
    finally:
        client.close()
    return server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster for the session (Debian's binaries, 127.0.0.1, a free
    port), as a SQLAlchemy URL; skipped only when the server binaries are not installed."""
    from tests.support.postgres import PostgresCluster, PostgresUnavailable

    try:
        cluster = PostgresCluster()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL is not installed: {exc}")
    with cluster as url:
        yield url


# A store on SQLite and on PostgreSQL, for the tests of the store's repositories.
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """None for SQLite in the data dir; else a new empty PostgreSQL database per test."""
    if request.param == "sqlite":
        return None
    return create_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(store_url: str | None, data_dir: Path) -> Iterator[Store]:
    opened = open_store(store_url, data_dir)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="session")
def browser(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Browser]:
    """One headless Chromium (Debian's, driven by Playwright) for the session, stopped at
    its end; skipped when either is not installed."""
    chosen = request.config.getoption("console_screenshots")
    keep_screenshots_in(
        Path(request.config.invocation_params.dir, chosen)
        if chosen
        else tmp_path_factory.getbasetemp() / "console"
    )
    with sync_playwright() as playwright:
        started = launch(playwright)
        try:
            yield started
        finally:
            started.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a fresh 1280x800 context (no cookies or storage from other tests),
    closed at teardown; its console messages are kept for a failure's report."""
    context = desktop_context(browser)
    try:
        opened = context.new_page()
        messages: list[str] = []
        request.node.stash[CONSOLE_MESSAGES] = messages
        opened.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
        opened.on("pageerror", lambda error: messages.append(f"page error: {error}"))
        yield opened
    finally:
        context.close()
