"""`make bench`: reading speed and memory on real RDB files, beside what Redis itself does.

Builds three RDB files with the local redis-server (cached in bench/.work): 1 M small
string keys, ~200 k mixed hashes/lists/sets/zsets/streams with TTLs, and a few big keys
of millions of elements. For each it prints keys/s and MB/s of reading with passthrough
values and with decoded values, each in a fresh process with its peak RSS, and times in
the same run `redis-cli --pipe` replaying the same keys as RESTORE commands into a fresh
redis-server (the protocol limit) and redis-server loading the file (the native limit),
then imports with the RESTORE and hand-off strategies, each checked by DEBUG DIGEST.
Every measure is taken BENCH_ROUNDS times (3), interleaved, and its median printed.
Where a file's encodings allow, an RDB 9 twin of it compares rdbtools, which cannot read
newer files.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers import RedisServer  # noqa: E402

from dcs_migration.formats import KeyRecord, RdbReader, feed_stream  # noqa: E402
from dcs_migration.formats.dump import dump_payload  # noqa: E402
from dcs_migration.target.resp import encode_command  # noqa: E402

WORK = ROOT / "bench" / ".work"
FUTURE_MS = 4_102_444_800_000  # 2100-01-01
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


# -- building the files ------------------------------------------------------------------


def _commands_small() -> Iterator[bytes]:
    yield encode_command([b"DEBUG", b"POPULATE", b"1000000", b"key", b"16"])


def _commands_mixed() -> Iterator[bytes]:
    rng = random.Random(7)
    for i in range(200_000):
        kind = i % 5
        key = b"%s:%d" % ((b"hash", b"list", b"set", b"zset", b"stream")[kind], i)
        if kind == 0:
            args = [b"HSET", key]
            for f in range(rng.randint(2, 20)):
                args += [b"field:%d" % f, b"value-%d-%d" % (i, rng.randint(0, 1 << 30))]
        elif kind == 1:
            args = [b"RPUSH", key] + [b"item-%d" % rng.randint(0, 1 << 40) for _ in range(10)]
        elif kind == 2:
            if i % 2:
                args = [b"SADD", key] + [b"%d" % rng.randint(0, 1 << 20) for _ in range(12)]
            else:
                args = [b"SADD", key] + [b"member-%d" % rng.randint(0, 1 << 30) for _ in range(12)]
        elif kind == 3:
            args = [b"ZADD", key]
            for m in range(10):
                args += [repr(rng.uniform(-1e6, 1e6)).encode(), b"m%d" % m]
        else:
            for n in range(4):
                yield encode_command([b"XADD", key, b"*", b"n", b"%d" % n, b"payload", b"x" * 20])
            yield encode_command([b"XGROUP", b"CREATE", key, b"g", b"0"])
            yield encode_command(
                [b"XREADGROUP", b"GROUP", b"g", b"c", b"COUNT", b"2", b"STREAMS", key, b">"]
            )
            args = None
        if args is not None:
            yield encode_command(args)
        if i % 3 == 0:
            yield encode_command([b"PEXPIREAT", key, b"%d" % (FUTURE_MS + i)])


def _commands_big() -> Iterator[bytes]:
    batch = 1000
    for start in range(0, 1_000_000, batch):
        fields = []
        for f in range(start, start + batch):
            fields += [b"field:%d" % f, b"v%d" % f]
        yield encode_command([b"HSET", b"big:hash", *fields])
        yield encode_command(
            [b"SADD", b"big:set", *(b"member:%d" % m for m in range(start, start + batch))]
        )
        zargs = []
        for m in range(start, start + batch):
            zargs += [b"%d" % m, b"z:%d" % m]
        yield encode_command([b"ZADD", b"big:zset", *zargs])
    for start in range(0, 2_000_000, batch):
        yield encode_command(
            [b"RPUSH", b"big:list", *(b"e%d" % e for e in range(start, start + batch))]
        )


BUILDERS = {"small": _commands_small, "mixed": _commands_mixed, "big": _commands_big}


def build(name: str) -> Path:
    path = WORK / f"{name}.rdb"
    if path.exists():
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"building {name}.rdb ...", flush=True)
    with RedisServer("--enable-debug-command", "yes") as server:
        data = b"".join(BUILDERS[name]())
        server.cli("--pipe", stdin=data)
        server.cli("SAVE")
        (server.dir / "dump.rdb").rename(path)
    return path


# -- measurements, each in a fresh process -------------------------------------------------


def measure_read(path: Path, decode: bool) -> dict[str, float]:
    start = time.perf_counter()
    keys = 0
    with path.open("rb") as stream:
        for record in feed_stream(RdbReader(), stream):
            if type(record) is KeyRecord:
                keys += 1
                if decode:
                    record.value  # noqa: B018
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "keys": keys,
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM: unlike ru_maxrss, not inherited from the
    parent across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_import(path: Path, port: int, strategy: str) -> dict[str, float]:
    from dcs_migration.importer import run_import
    from dcs_migration.target.endpoint import Endpoint
    from dcs_migration.target.options import Strategy, WriteOptions

    options = WriteOptions(strategy=Strategy(strategy), flush=strategy == "handoff")
    result = run_import([str(path)], Endpoint("127.0.0.1", port), options)
    if result.status != "SUCCESS":
        raise SystemExit(f"import failed: {result.error}")
    return {"seconds": result.seconds, "keys": result.keys_written, "peak_rss_mb": peak_rss_mb()}


def time_import(path: Path, strategy: str) -> dict[str, float]:
    with RedisServer("--enable-debug-command", "yes") as server:
        out = in_child("measure-import", str(path), str(server.port), strategy)
        out["digest"] = server.cli("DEBUG", "DIGEST")  # type: ignore[assignment]
        return out


def digest_of(path: Path) -> str:
    server = RedisServer("--enable-debug-command", "yes", rdb=path)
    try:
        server.start(timeout=600)
        return server.cli("DEBUG", "DIGEST")
    finally:
        server.stop()


def time_rdbtools(path: Path) -> str:
    """rdbtools' `rdb --command protocol` piped into redis-cli --pipe, where it can read."""
    rdb = shutil.which("rdb") or str(Path(sys.executable).parent / "rdb")
    if not Path(rdb).exists():
        return "not installed"
    with RedisServer() as server:
        start = time.perf_counter()
        produce = subprocess.Popen(
            [rdb, "--command", "protocol", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        pipe = subprocess.run(
            ["redis-cli", "-p", str(server.port), "--pipe"],
            stdin=produce.stdout,
            capture_output=True,
        )
        produce.wait()
        if produce.returncode != 0 or pipe.returncode != 0:
            return "cannot read it"
        return f"{time.perf_counter() - start:.2f}s"


def rdb9_twin(path: Path) -> Path | None:
    """The same keys as an RDB 9 file (what Redis 5 writes), for rdbtools, which cannot
    read RDB 10: None when a value's encoding needs a newer version."""
    from dcs_migration.formats.rdb_writer import RdbWriter
    from dcs_migration.target.capabilities import TYPE_MIN_RDB_VERSION

    out = WORK / f"{path.stem}.rdb9.rdb"
    if out.exists():
        return out
    writer = RdbWriter(9)
    with path.open("rb") as stream, out.open("wb") as sink:
        sink.write(writer.header())
        for r in feed_stream(RdbReader(), stream):
            if type(r) is KeyRecord:
                if TYPE_MIN_RDB_VERSION.get(r.rdb_type, 99) > 9:
                    sink.close()
                    out.unlink()
                    return None
                sink.write(writer.keys([r]))
        sink.write(writer.end())
    return out


def in_child(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def restore_commands(path: Path) -> Path:
    out = WORK / f"{path.stem}.restore.resp"
    if out.exists():
        return out
    with path.open("rb") as stream, out.open("wb") as sink:
        for r in feed_stream(RdbReader(), stream):
            if type(r) is KeyRecord:
                payload = dump_payload(r.rdb_type, r.payload, r.rdb_version)
                if r.expire_at_ms is None:
                    sink.write(encode_command([b"RESTORE", r.key, b"0", payload]))
                else:
                    ttl = b"%d" % r.expire_at_ms
                    sink.write(encode_command([b"RESTORE", r.key, ttl, payload, b"ABSTTL"]))
    return out


def time_pipe(resp_file: Path) -> float:
    with RedisServer() as server:
        start = time.perf_counter()
        with resp_file.open("rb") as stdin:
            subprocess.run(
                ["redis-cli", "-p", str(server.port), "--pipe"],
                stdin=stdin,
                capture_output=True,
                check=True,
            )
        return time.perf_counter() - start


def time_native(path: Path) -> float:
    server = RedisServer(rdb=path)
    start = time.perf_counter()
    try:
        server.start(timeout=600)
        while "loading:1" in server.cli("INFO", "persistence"):
            time.sleep(0.01)
        return time.perf_counter() - start
    finally:
        server.stop()


def one_round(path: Path) -> dict[str, dict[str, Any]]:
    """Each measure of one file, once."""
    return {
        "passthrough": in_child("measure-read", str(path), "passthrough"),
        "decoded": in_child("measure-read", str(path), "decoded"),
        "pipe": {"seconds": time_pipe(restore_commands(path))},
        "native": {"seconds": time_native(path)},
        "restore": time_import(path, "restore"),
        "handoff": time_import(path, "handoff"),
    }


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median time; its peak RSS is the highest of all runs."""
    ranked = sorted(runs, key=lambda r: float(r["seconds"]))
    middle = dict(ranked[len(ranked) // 2])
    if "peak_rss_mb" in middle:
        middle["peak_rss_mb"] = max(float(r["peak_rss_mb"]) for r in runs)
    return middle


def _cell(m: dict[str, float], keys: float, size_mb: float) -> str:
    s = m["seconds"]
    return f"{s:6.2f}s {keys / s / 1e3:6.0f}k/s {size_mb / s:5.0f}MB/s {m['peak_rss_mb']:4.0f}MB"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "measure-read":
        print(json.dumps(measure_read(Path(sys.argv[2]), sys.argv[3] == "decoded")))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "measure-import":
        print(json.dumps(measure_import(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4])))
        return
    names = sys.argv[1:] or list(BUILDERS)
    rows = []
    imports = []
    for name in names:
        path = build(name)
        size_mb = path.stat().st_size / 1e6
        digest = digest_of(path)
        rdbtools = time_rdbtools(path)
        # Every measure taken ROUNDS times, interleaved, and its median kept: a shared
        # machine's noise moves single timings by a third.
        rounds: dict[str, list[Any]] = {}
        for _ in range(ROUNDS):
            for measure, result in one_round(path).items():
                rounds.setdefault(measure, []).append(result)
        m = {measure: _median(runs) for measure, runs in rounds.items()}
        keys = m["passthrough"]["keys"]
        pipe, native = m["pipe"]["seconds"], m["native"]["seconds"]
        rows.append((name, size_mb, keys, m["passthrough"], m["decoded"], pipe, native))
        for strategy in ("restore", "handoff"):
            exact = all(run["digest"] == digest for run in rounds[strategy])
            imported = m[strategy]
            row = (f"{name}/{strategy}", size_mb, keys, imported, pipe, native, exact, rdbtools)
            imports.append(row)
    print(f"\nmedians of {ROUNDS} interleaved rounds (BENCH_ROUNDS)")
    header = (
        f"{'file':<7}{'MB':>8}{'keys':>10}  {'read passthrough':>28}  {'read decoded':>28}"
        f"  {'pipe RESTORE':>13}{'native':>9}  {'pass/pipe':>9}{'pass/native':>12}"
    )
    print(header)
    print("-" * len(header))
    for name, size_mb, keys, p, d, pipe, native in rows:
        line = f"{name:<7}{size_mb:8.1f}{keys:10.0f}  {_cell(p, keys, size_mb):>28}  "
        line += f"{_cell(d, keys, size_mb):>28}  {pipe:12.2f}s{native:8.2f}s  "
        line += f"{pipe / p['seconds']:8.2f}x{native / p['seconds']:11.2f}x"
        print(line)
    print("\nimport into a fresh redis-server, RESTORE and hand-off strategies, same rounds:")
    header = (
        f"{'file':<15}{'MB':>8}{'keys':>10}  {'dcs-migration import':>28}  {'pipe RESTORE':>13}"
        f"{'native':>9}{'rdbtools|pipe':>15}  {'vs pipe':>8}{'vs native':>10}  exact"
    )
    print(header)
    print("-" * len(header))
    for name, size_mb, keys, m, pipe, native, exact, rdbtools in imports:
        line = f"{name:<15}{size_mb:8.1f}{keys:10.0f}  {_cell(m, keys, size_mb):>28}  "
        line += f"{pipe:12.2f}s{native:8.2f}s{rdbtools:>15}  "
        line += f"{pipe / m['seconds']:7.2f}x{native / m['seconds']:9.2f}x  {exact}"
        print(line)
    older = [(n, twin) for n in names if (twin := rdb9_twin(WORK / f"{n}.rdb")) is not None]
    if older:
        print("\nthe same keys as RDB 9 (what Redis 5 writes), which rdbtools can read:")
        for name, twin in older:
            rdbtools = time_rdbtools(twin)
            pipes, ours_runs = [], []
            for _ in range(ROUNDS):
                pipes.append(time_pipe(restore_commands(twin)))
                ours_runs.append(time_import(twin, "restore")["seconds"])
            pipe, ours = statistics.median(pipes), statistics.median(ours_runs)
            line = f"{name + ' (RDB 9)':<15}  dcs-migration import {ours:.2f}s ({pipe / ours:.2f}x)"
            line += f"  rdbtools|pipe {rdbtools}"
            if rdbtools.endswith("s"):
                line += f" ({pipe / float(rdbtools[:-1]):.2f}x)"
            print(line + f"  pipe RESTORE {pipe:.2f}s")
    print(
        "\nvs pipe = redis-cli --pipe time / import time (1.0 means the protocol limit); "
        "vs native = redis-server loading the file / import time; exact: DEBUG DIGEST of the "
        "target equals that of a server that loaded the file itself."
    )
    print(
        "\npass/pipe > 1 means reading with passthrough values outpaces what redis-server can "
        "execute as RESTORE; peak RSS is the reader process's maximum resident set."
    )
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
