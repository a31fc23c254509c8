"""The service as a user runs it: `dcs-migration serve` in its own process, keys and
instances minted with the CLI, and the official SDK pointed at it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from uuid import uuid4

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from huaweicloudsdkdcs.v2 import DcsClient

from tests.support.servers import free_port


def _serve(port: int) -> list[str]:
    return [sys.executable, "-m", "dcs_migration", "serve", "--port", str(port)]


class Service:
    def __init__(
        self,
        data_dir: Path | None = None,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        command: Callable[[int], list[str]] | None = None,
    ) -> None:
        """`log_path`: a file the service's stdout and stderr are appended to (by default
        they are discarded). `command`: how to start it (default `serve --port PORT`), a
        function of the port it is to listen on."""
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="dcs-service-"))
        self.log_path = log_path
        self.env = dict(os.environ, DCS_MIGRATION_DATA_DIR=str(self.data_dir), **(env or {}))
        self.port = free_port()
        self.command = (command or _serve)(self.port)
        self.process: subprocess.Popen[bytes] | None = None
        self._granted: set[tuple[str, str]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "dcs_migration", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    def start(self) -> Service:
        log = None if self.log_path is None else open(self.log_path, "ab")  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=subprocess.DEVNULL if log is None else log,
                stderr=subprocess.DEVNULL if log is None else subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if log is not None:
                log.close()  # the child holds its own copy
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the service did not start")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, ak: str, sk: str, project_id: str) -> DcsClient:
        config = HttpConfig.get_default_config()
        config.timeout = (5, 30)
        return (
            DcsClient.new_builder()
            .with_http_config(config)
            .with_credentials(BasicCredentials(ak, sk, project_id))
            .with_endpoint(self.url)
            .build()
        )

    def grant(self, bucket: str, *projects: str) -> None:
        """`buckets grant` of `bucket` to each project (once per service)."""
        for project in projects:
            if (project, bucket) not in self._granted:
                self.cli("buckets", "grant", "--project-id", project, "--bucket", bucket)
                self._granted.add((project, bucket))

    def bucket(self, name: str, *projects: str) -> Path:
        """The folder of bucket `name` (made if missing), granted to `projects`."""
        path = self.data_dir / "buckets" / name
        path.mkdir(parents=True, exist_ok=True)
        self.grant(name, *projects)
        return path

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def import_task_json(
    instance_id: str, file_name: str = "small.rdb", **target: Any
) -> dict[str, Any]:
    """A create-task body as raw JSON, for requests signed by hand: `file_name` from the
    folder bucket `bucket` into the instance, with `target` added to target_instance."""
    return {
        "task_name": "import",
        "migration_type": "backupfile_import",
        "migration_method": "full_amount_migration",
        "backup_files": {
            "file_source": "self_build_obs",
            "bucket_name": "bucket",
            "files": [{"file_name": file_name}],
        },
        "target_instance": {"id": instance_id, **target},
    }


def signed(
    service: Service,
    key: dict[str, Any],
    method: str,
    path: str,
    body: Any = None,
    query: Sequence[tuple[str, str]] = (),
) -> tuple[int, dict[str, Any], float]:
    """A request signed as the SDK signs it, with the key `keys create` printed (for bodies
    the SDK cannot send, such as this service's extensions): (status, JSON body, seconds
    taken). `query` is signed and sent as the SDK sends it (sorted, encoded). Each carries
    a signed request id of its own, as the README tells a client that may send one call
    twice within a second (a signature is accepted once)."""
    data = json.dumps(body).encode() if body is not None else b""
    request = SdkRequest(
        method=method,
        schema="http",
        host=f"127.0.0.1:{service.port}",
        resource_path=path,
        uri=path,
        query_params=list(query),
        header_params={"Content-Type": "application/json", "X-Client-Request-Id": uuid4().hex},
        body=data,
    )
    Signer(BasicCredentials(key["ak"], key["sk"], key["project_id"])).sign(request)
    http = urllib.request.Request(
        service.url + request.uri, data=data or None, method=method, headers=request.header_params
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(http, timeout=60) as answer:
            return answer.status, json.loads(answer.read()), time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), time.monotonic() - started
