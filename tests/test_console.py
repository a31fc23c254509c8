"""The web console as an operator uses it: headless Chromium against `dcs-migration serve`,
signing every call in the page with the key typed in, on real redis-servers and a corpus
file. Each page is saved as a screenshot (`make screenshots` refreshes the README's)."""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
import redis

from dcs_migration.api.auth import AuthError, verify_request
from tests.support.backups import big_rdb
from tests.support.corpus import CORPUS
from tests.support.load import Load, assert_copied
from tests.support.sdk import PROJECT
from tests.support.servers import RedisServer
from tests.support.service import Service, import_task_json, signed
from tests.support.waiting import until

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

from tests.support.browser import desktop_context, phone_context, screenshot

pytestmark = [pytest.mark.redis, pytest.mark.service]

CORPUS_RDB = CORPUS / "native" / "redis-7.0.15" / "dump.rdb"
SOURCE_ARGS = ("--repl-diskless-sync-delay", "0")


class Site:
    """One service with a project key, a registered target, a source and a bucket."""

    def __init__(self, service: Service, tmp: Path) -> None:
        self.service = service
        self.key = service.cli("keys", "create", "--project-id", PROJECT)
        self.target = RedisServer().start()
        self.source = RedisServer(*SOURCE_ARGS).start()
        self.target_id = self.register("target", self.target)
        self.source_id = self.register("source", self.source)
        bucket = service.bucket("backups", PROJECT)
        (bucket / "redis-7.0").mkdir()
        shutil.copy(CORPUS_RDB, bucket / "redis-7.0" / "dump.rdb")
        self.bucket = bucket
        self.tmp = tmp

    def register(self, name: str, server: RedisServer) -> str:
        out = self.service.cli(
            "instances", "add", "--project-id", PROJECT, "--name", name,
            "--addrs", f"127.0.0.1:{server.port}",
        )  # fmt: skip
        instance_id: str = out["instance_id"]
        return instance_id

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        status, answer, _ = signed(self.service, self.key, method, f"/v2/{PROJECT}{path}", body)
        assert status < 300, answer
        return answer

    def task_named(self, name: str) -> dict[str, Any]:
        tasks = self.call("GET", "/migration-tasks")["migration_tasks"]
        named = [t for t in tasks if t["task_name"] == name]
        assert named, f"no task named {name}"
        found: dict[str, Any] = named[0]
        return found

    def stop(self) -> None:
        self.target.stop()
        self.source.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("console")
    with Service(data_dir=tmp / "data", log_path=tmp / "service.log") as service:
        running = Site(service, tmp)
        try:
            yield running
        finally:
            running.stop()


def open_console(page: Page, site: Site) -> None:
    page.goto(f"{site.service.url}/console/")


def sign_in(
    page: Page, site: Site, sk: str | None = None, key: dict[str, Any] | None = None
) -> None:
    key = key or site.key
    open_console(page, site)
    page.get_by_label("Project ID").fill(PROJECT)
    page.get_by_label("Access key (AK)").fill(key["ak"])
    page.get_by_label("Secret key (SK)").fill(sk or key["sk"])
    page.get_by_role("button", name="Sign in").click()


def watch_errors(page: Page) -> list[str]:
    """The page's script errors and console errors, as they happen."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda message: (
            errors.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    return errors


def test_a_wrong_secret_key_is_refused_saying_why(page: Page, site: Site) -> None:
    errors = watch_errors(page)
    sign_in(page, site, sk="not-the-secret-key")
    alert = page.locator(".form-error")
    alert.wait_for()
    assert "Refused" in alert.inner_text()
    assert "signature" in alert.inner_text().lower() or "access key" in alert.inner_text()
    assert page.get_by_role("navigation", name="Sections").is_hidden()
    screenshot(page, "sign-in-refused")
    # A page of another project is refused too, for what it is.
    page.get_by_label("Project ID").fill("another-project")
    page.get_by_label("Secret key (SK)").fill(site.key["sk"])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("does not belong to the project", exact=False).wait_for()
    assert errors == [x for x in errors if "401" in x or "403" in x]


def test_a_revoked_key_signs_the_console_out_saying_why(page: Page, site: Site) -> None:
    key = site.service.cli("keys", "create", "--project-id", PROJECT)
    sign_in(page, site, key=key)
    page.get_by_role("heading", name="Migration tasks").wait_for()
    site.service.cli("keys", "revoke", key["ak"])
    page.get_by_role("heading", name="Sign in").wait_for(timeout=15_000)
    notice = page.get_by_role("status")
    assert "Signed out" in notice.inner_text()
    assert page.evaluate("sessionStorage.length") == 0  # the SK is forgotten


def test_the_signature_is_computed_the_same_with_and_without_web_crypto(
    page: Page, site: Site
) -> None:
    """The console signs with Web Crypto where the browser offers it, and computes the same
    digests itself where it does not (a page over plain HTTP on a private address)."""
    open_console(page, site)
    result = page.evaluate(
        """async () => {
          const d = await import("./js/digest.js");
          const cases = ["", "abc", "x".repeat(1000), "é✓🙂", "a".repeat(64), "a".repeat(55)];
          const out = [];
          for (const text of cases) {
            out.push([d.hex(await d.sha256(text)), d.hex(d.sha256Here(text))]);
            out.push([d.hex(await d.hmacSha256("k".repeat(70), text)),
                      d.hex(d.hmacSha256Here("k".repeat(70), text))]);
            out.push([d.hex(await d.hmacSha256("key", text)),
                      d.hex(d.hmacSha256Here("key", text))]);
          }
          return {webCrypto: d.webCryptoAvailable(), pairs: out};
        }"""
    )
    assert result["webCrypto"]
    for with_web_crypto, here in result["pairs"]:
        assert with_web_crypto == here
    assert result["pairs"][3][1] == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256("abc")
    )


def test_the_consoles_signature_is_the_one_the_service_verifies(page: Page, site: Site) -> None:
    """The page's signer against the service's own verifier, on a path, query and body of
    every kind of character (spaces, `+`, unicode, reserved ones)."""
    open_console(page, site)
    path = "/v2/p-1/buckets/my bucket+ü/objects"
    query = {"prefix": "a b+c/ü~*'()!", "limit": "7", "marker": ""}
    body = json.dumps({"task_name": "naïve ✓", "x": "a+b c"}, ensure_ascii=False)
    signed_headers = page.evaluate(
        """async ([path, query, body]) => {
          const s = await import("./js/signer.js");
          const headers = await s.signedHeaders({
            method: "POST", path, query, body, ak: "AK1", sk: "secret ✓",
            headers: {host: "127.0.0.1:9", "Content-Type": "application/json",
                      "X-Client-Request-Id": "abc"},
            now: new Date(Date.UTC(2026, 0, 2, 3, 4, 5)),
          });
          return {headers, query: s.canonicalQuery(query)};
        }""",
        [path, query, body],
    )
    headers = {**signed_headers["headers"], "Host": "127.0.0.1:9"}
    assert headers["X-Sdk-Date"] == "20260102T030405Z"
    result = verify_request(
        "POST",
        quote(path),
        signed_headers["query"],
        headers,
        body.encode(),
        lambda ak: ("p-1", "secret ✓") if ak == "AK1" else None,
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert result.project_id == "p-1"
    with pytest.raises(AuthError):  # and a changed body is not
        verify_request(
            "POST",
            quote(path),
            signed_headers["query"],
            headers,
            body.encode() + b" ",
            lambda ak: ("p-1", "secret ✓"),
            datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        )


def test_an_import_of_a_corpus_file_reaches_success_and_its_logs_read(
    page: Page, site: Site
) -> None:
    errors = watch_errors(page)
    sign_in(page, site)
    page.get_by_role("heading", name="Migration tasks").wait_for()
    screenshot(page, "tasks-empty")
    page.get_by_role("link", name="Create backup import").first.click()
    page.get_by_label("Task name").fill("console-import")
    bucket = page.get_by_label("Bucket", exact=True)
    bucket.fill("backups")
    bucket.dispatch_event("change")
    page.get_by_label("Import redis-7.0/dump.rdb").check()
    row = page.locator("table.objects tr", has_text="redis-7.0/dump.rdb")
    assert re.search(r"\d", row.inner_text())  # its size and time are listed
    page.get_by_label("Target instance").select_option(site.target_id)
    screenshot(page, "create-import")
    page.get_by_role("button", name="Create").click()
    page.locator(".status[data-status='SUCCESS']").wait_for(timeout=60_000)
    assert page.get_by_role("heading", name="console-import").is_visible()
    page.locator("table.logs tbody tr", has_text="").first.wait_for()
    logs = page.locator("table.logs").inner_text()
    assert "INFO" in logs
    screenshot(page, "task-detail")
    page.get_by_label("Level").select_option("ERROR")
    page.get_by_text("No log at this level.").wait_for()
    task = site.task_named("console-import")
    assert task["status"] == "SUCCESS"
    oracle = json.loads((CORPUS_RDB.parent / "dump.oracle.json").read_text())
    assert oracle  # the corpus file was the one imported
    assert redis.Redis(port=site.target.port).dbsize() > 0
    assert not errors, errors


def unlabelled_controls(page: Page) -> list[str]:
    """Form controls of the page without an accessible name (label or aria-label)."""
    found: list[str] = page.evaluate(
        """() => [...document.querySelectorAll("input, select, textarea, button")]
          .filter((c) => !c.closest("[hidden]") && c.type !== "hidden")
          .filter((c) => !(c.labels && c.labels.length) && !c.getAttribute("aria-label")
                         && !(c.tagName === "BUTTON" && c.textContent.trim()))
          .map((c) => c.outerHTML)"""
    )
    return found


def test_a_refused_field_is_named_beside_it(page: Page, site: Site) -> None:
    sign_in(page, site)
    page.get_by_role("link", name="Backup import", exact=True).click()
    page.get_by_label("Task name").fill("no-files")
    page.get_by_label("Bucket", exact=True).fill("backups")
    page.get_by_label("Target instance").select_option(site.target_id)
    page.get_by_role("button", name="Create").click()
    error = page.locator("[data-field~='backup_files.files'] .field-error")
    error.wait_for()
    assert "backup_files.files" in error.inner_text()
    screenshot(page, "create-import-refused")
    # The online form: the name's rule, beside the name.
    page.get_by_role("link", name="Online migration", exact=True).click()
    page.get_by_label("Task name").fill("1-starts-with-a-digit")
    page.get_by_role("button", name="Create and start").click()
    name_error = page.locator("[data-field~='name'] .field-error")
    name_error.wait_for()
    assert "name" in name_error.inner_text()
    assert page.get_by_label("Task name").get_attribute("aria-invalid") == "true"
    assert page.evaluate("document.activeElement.name") == "name"
    assert unlabelled_controls(page) == []


def test_a_long_import_is_stopped_from_the_list(page: Page, site: Site) -> None:
    makers: list[RedisServer] = []

    def maker(*args: str) -> RedisServer:
        makers.append(RedisServer(*args).start())
        return makers[-1]

    try:
        big_rdb(site.bucket / "big.rdb", maker)  # type: ignore[arg-type]
    finally:
        for server in makers:
            server.stop()
    sign_in(page, site)
    page.get_by_role("link", name="Backup import", exact=True).click()
    page.get_by_label("Task name").fill("long-import")
    page.get_by_label("Import big.rdb").check()
    page.get_by_label("Target instance").select_option(site.target_id)
    page.get_by_role("button", name="Create").click()
    page.locator(".status[data-status='MIGRATING']").wait_for()
    page.get_by_role("link", name="← Migration tasks").click()
    row = page.locator("tr", has_text="long-import")
    # The bar moves without a reload.
    bar = row.get_by_role("progressbar")
    bar.wait_for()
    until(
        lambda: 0 < int(bar.get_attribute("aria-valuenow") or 0) < 100,
        "the list's bar to show the import under way",
        60,
    )
    screenshot(page, "tasks-running")
    row.get_by_role("button", name="Stop long-import").click()
    dialog = page.get_by_role("dialog")
    assert "Stop the task?" in dialog.inner_text()
    dialog.get_by_role("button", name="Stop").click()
    row.locator(".status[data-status='TERMINATED']").wait_for(timeout=15_000)
    assert site.task_named("long-import")["status"] == "TERMINATED"
    # Deleting asks first; Cancel keeps it.
    row.get_by_role("button", name="Delete long-import").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    assert site.task_named("long-import")["status"] == "TERMINATED"
    assert unlabelled_controls(page) == []


def test_an_online_migration_reaches_incremental_and_is_sync_stopped(
    page: Page, site: Site
) -> None:
    target = RedisServer().start()
    try:
        target_id = site.register("online-target", target)
        source = redis.Redis(port=site.source.port)
        source.mset({f"before:{i}": os.urandom(32) for i in range(2000)})
        sign_in(page, site)
        page.get_by_role("link", name="Online migration", exact=True).click()
        page.get_by_label("Task name").fill("live-copy")
        page.get_by_label("Migration method").select_option("incremental_migration")
        page.get_by_label("Bandwidth limit, MB/s (empty: none)").fill("100")
        page.get_by_label("Source instance").select_option(site.source_id)
        page.get_by_label("Target instance").select_option(target_id)
        screenshot(page, "create-online")
        page.get_by_role("button", name="Create and start").click()
        page.locator(".status[data-status='INCRMIGEATING']").wait_for(timeout=60_000)
        load = Load(site.source.port, per_second=200, dbs=(0,)).start()
        try:
            # The chart draws the writes as the stats report them.
            page.wait_for_function(
                """() => /ops\\/s: now [1-9]/.test(document.querySelector(".legend").textContent)
                    && Number(document.querySelector("svg.chart").dataset.samples) >= 5""",
                timeout=30_000,
            )
            screenshot(page, "online-detail")
        finally:
            load.stop()
        page.get_by_text("In sync").wait_for(timeout=30_000)
        page.get_by_role("button", name="Sync stop live-copy").click()
        page.get_by_role("dialog").get_by_role("button", name="Sync stop").click()
        page.locator(".status[data-status='TERMINATED']").wait_for(timeout=60_000)
        assert_copied(site.source, target, load)
    finally:
        target.stop()


def test_a_refused_configuration_is_finished_later_from_the_list(page: Page, site: Site) -> None:
    target = RedisServer().start()
    try:
        target_id = site.register("later-target", target)
        sign_in(page, site)
        page.get_by_role("link", name="Online migration", exact=True).click()
        page.get_by_label("Task name").fill("configured-later")
        page.get_by_role("group", name="Source").get_by_role("radio", name="Addresses").check()
        page.get_by_label("Source addresses").fill("not-an-address")
        page.get_by_label("Target instance").select_option(target_id)
        page.get_by_role("button", name="Create and start").click()
        error = page.locator("[data-field~='source_instance.addrs'] .field-error")
        error.wait_for()
        assert "source_instance.addrs" in error.inner_text()
        assert "waits for a configuration" in page.get_by_role("main").inner_text()
        # Left waiting: the list offers to configure it.
        page.get_by_role("link", name="Migration tasks", exact=True).click()
        row = page.locator("tr", has_text="configured-later")
        row.locator(".status[data-status='RUNNING']").wait_for()
        row.get_by_role("button", name="Configure configured-later").click()
        page.get_by_role("button", name="Configure and start").wait_for()
        until(
            lambda: page.get_by_label("Task name").input_value() == "configured-later",
            "the task's name in the form",
            15,
        )
        page.get_by_role("group", name="Source").get_by_role("radio", name="Addresses").check()
        page.get_by_label("Source addresses").fill(f"127.0.0.1:{site.source.port}")
        page.get_by_label("Target instance").select_option(target_id)
        page.get_by_role("button", name="Configure and start").click()
        page.locator(".status[data-status='INCRMIGEATING']").wait_for(timeout=60_000)
        page.get_by_role("button", name="Stop configured-later", exact=True).click()
        page.get_by_role("dialog").get_by_role("button", name="Stop").click()
        page.locator(".status[data-status='TERMINATED']").wait_for(timeout=30_000)
        assert site.task_named("configured-later")["status"] == "TERMINATED"
    finally:
        target.stop()


def test_instances_register_back_up_download_and_restore(page: Page, site: Site) -> None:
    extra = RedisServer().start()
    try:
        redis.Redis(port=extra.port).mset({f"kept:{i}": i for i in range(500)})
        sign_in(page, site)
        page.get_by_role("link", name="Instances and backups").click()
        form = page.locator("form", has_text="Register an instance")
        form.get_by_label("Name").fill("cache-7")
        form.get_by_label("Addresses (host:port; a cluster: several, comma-separated)").fill(
            f"127.0.0.1:{extra.port}"
        )
        form.get_by_role("button", name="Register").click()
        page.get_by_role("button", name="Backups of cache-7").click()
        page.get_by_label("Remark").fill("before the move")
        page.get_by_role("button", name="Take a backup").click()
        page.locator("#backup-rows tr", has_text="succeed").wait_for(timeout=60_000)
        screenshot(page, "instances")
        page.locator("#backup-rows").get_by_role("button", name=re.compile("^Download")).click()
        link = page.locator("#links a").first
        link.wait_for()
        answer = page.request.get(link.get_attribute("href") or "")
        assert answer.ok and answer.body()[:5] == b"REDIS"
        redis.Redis(port=extra.port).flushall()
        page.locator("#backup-rows").get_by_role("button", name=re.compile("^Restore")).click()
        page.get_by_role("dialog").get_by_role("button", name="Restore").click()
        page.locator("table.restores tr", has_text="succeed").wait_for(timeout=60_000)
        assert redis.Redis(port=extra.port).dbsize() == 500
        assert unlabelled_controls(page) == []
    finally:
        extra.stop()


def test_the_list_filters_by_status_and_type_on_the_service(page: Page, site: Site) -> None:
    body = import_task_json(site.target_id, "redis-7.0/dump.rdb")
    body["backup_files"]["bucket_name"] = "backups"
    task_id = site.call("POST", "/migration-task", {**body, "task_name": "filtered"})["id"]
    until(lambda: site.task_named("filtered")["status"] == "SUCCESS", "the import", 60)
    sign_in(page, site)
    page.locator(f"tr[data-task-id='{task_id}']").wait_for()
    page.get_by_label("Status").select_option("SUCCESS")
    page.get_by_text("match the filters").wait_for()
    shown = page.locator("tr[data-task-id] .status")
    assert shown.count() >= 1
    assert set(shown.evaluate_all("els => els.map(e => e.dataset.status)")) == {"SUCCESS"}
    page.get_by_label("Status").select_option("FAILED")
    page.get_by_text("No task matches the filters.").wait_for()
    page.get_by_label("Status").select_option("")
    page.get_by_label("Type").select_option("online_migration")
    page.locator(f"tr[data-task-id='{task_id}']").wait_for(state="detached")
    kinds = page.locator("tr[data-task-id]").evaluate_all("rows => rows.length")
    assert kinds == 0 or "Backup import" not in page.locator("table.tasks tbody").inner_text()
    status, answer, _ = signed(
        site.service,
        site.key,
        "GET",
        f"/v2/{PROJECT}/migration-tasks",
        query=[("status", "SUCCESS,bogus")],
    )
    assert status == 400 and "status: 'bogus'" in answer["error_msg"]
    status, answer, _ = signed(
        site.service,
        site.key,
        "GET",
        f"/v2/{PROJECT}/migration-tasks",
        query=[("status", "incrmigrating,SUCCESS"), ("migration_type", "backupfile_import")],
    )
    assert status == 200 and answer["count"] >= 1
    assert {t["status"] for t in answer["migration_tasks"]} == {"SUCCESS"}


def test_keyboard_and_phone_width(browser: Browser, site: Site) -> None:
    """The sections are reached with the keyboard alone, and the task list reads at a
    phone's width with nothing wider than the screen."""
    context = desktop_context(browser)
    try:
        page = context.new_page()
        sign_in(page, site)
        page.get_by_role("heading", name="Migration tasks").wait_for()
        page.reload()  # signed in still (this tab's session), the focus at the page's start
        page.get_by_role("heading", name="Migration tasks").wait_for()
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        reached = []
        for _ in range(6):
            page.keyboard.press("Tab")
            reached.append(page.evaluate("document.activeElement.textContent"))
        assert "Instances and backups" in reached
        while page.evaluate("document.activeElement.textContent") != "Instances and backups":
            page.keyboard.press("Shift+Tab")
        page.keyboard.press("Enter")
        page.get_by_role("heading", name="Instances and backups").wait_for()
    finally:
        context.close()
    context = phone_context(browser)
    try:
        page = context.new_page()
        sign_in(page, site)
        page.locator("tr[data-task-id]").first.wait_for()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        screenshot(page, "tasks-phone")
    finally:
        context.close()


def test_the_console_is_served_unsigned_with_a_strict_policy(site: Site) -> None:
    """The console's files need no signature and hold no secret; the page that holds
    one runs no script, style or frame of anyone else."""
    base = site.service.url

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(f"{base}/console", timeout=10)
    assert redirect.value.code == 308
    assert redirect.value.headers["Location"].endswith("/console/")
    with urllib.request.urlopen(f"{base}/console/", timeout=10) as answer:
        policy = answer.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert b'<script type="module" src="js/app.js">' in answer.read()
    with urllib.request.urlopen(f"{base}/console/js/signer.js", timeout=10) as answer:
        assert "javascript" in answer.headers["Content-Type"]
    for outside in ("/console/../v2/x/migration-tasks", "/console/%2e%2e/secret.key"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + outside, timeout=10)
        assert refused.value.code in (401, 404)
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(f"{base}/v2/{PROJECT}/migration-tasks", timeout=10)
    assert unsigned.value.code == 401
