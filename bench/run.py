"""`make bench`: import speed and memory as a user meets them, beside what Redis itself does.

Each dataset (the DATASETS table) is an RDB file built once with the local redis-server
and cached in bench/.work. Every measure is a whole process, timed from spawn to exit
against a redis-server started fresh for that one run:

- `restore`: `dcs-migration import FILE --target redis://...` (RESTORE, or SET for
  short strings), and beside it `pipe`: `redis-cli --pipe` fed the same keys as RESTORE
  commands (built once, outside the timing): the protocol's limit;
- `handoff`: `dcs-migration import FILE --strategy handoff --flush`, and beside it
  `native`: `redis-server --dbfilename FILE` from spawn until it answers PING after
  loading: the server's own loader.

Rounds are interleaved (each measure once per round, all datasets, then again), and
BENCH_ROUNDS of them (3) are taken: the table prints each measure's median and the
median of its per-round ratio to its reference. Peak RSS is the process's own high-water
mark (VmHWM, polled; a child's ru_maxrss would include this process's, which it
inherits at exec), the target server's beside it. Each import is checked by DEBUG
DIGEST against the server that loaded the file itself.

A second table keeps the in-process figures: reading speed (passthrough and decoded
values) in a process of its own, and the import's own timing from its summary line,
whose difference from the whole process is the command's start-up and exit. Where a
file's encodings allow, an RDB 9 twin compares rdbtools, which cannot read newer files.

Memory: two datasets hold values bigger than any bound an importer could keep them
under (a 200 MB string beside hashes, lists and sets of millions of elements, written by
redis-server; a 512 MB string and a 1 GB hash, written by the project's RDB writer). They
are measured in the first round only (time moves little, memory not at all) with every
strategy and `inspect`, and the table ends with each process's peak RSS against the
200 MB goal.

To add a dataset, add one Dataset entry: its name, the RESP commands that fill a server
(or a function that writes the file), which measures to run, and any server arguments.
"""

from __future__ import annotations

import compileall
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.procstat import vmhwm_mb  # noqa: E402
from tests.support.rdbgen import huge_rdb  # noqa: E402
from tests.support.servers import RedisServer  # noqa: E402

from dcs_migration.client.resp import encode_command  # noqa: E402
from dcs_migration.formats import KeyRecord  # noqa: E402
from dcs_migration.formats.dump import dump_payload  # noqa: E402
from dcs_migration.formats.records import BigKeyRecord  # noqa: E402
from dcs_migration.formats.values import decode_value  # noqa: E402
from dcs_migration.reading import read_batches, read_input  # noqa: E402
from dcs_migration.sources import find_inputs  # noqa: E402

WORK = ROOT / "bench" / ".work"
FUTURE_MS = 4_102_444_800_000  # 2100-01-01
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CLI = Path(sys.executable).parent / "dcs-migration"
DEBUG = ("--enable-debug-command", "yes")
RSS_POLL_SECONDS = 0.005
# What each import is the peer of: its ratio is reference time / its time.
REFERENCE = {"restore": "pipe", "rewrite": "pipe", "handoff": "native"}
LABELS = {
    "pipe": "redis-cli --pipe RESTORE",
    "restore": "import (RESTORE)",
    "rewrite": "import (rewrite)",
    "native": "redis-server loads it",
    "handoff": "import --strategy handoff",
    "inspect": "inspect",
}
OURS = ("restore", "rewrite", "handoff", "inspect")  # the measures of dcs-migration itself
RSS_GOAL_MB = 200


# -- the datasets --------------------------------------------------------------------------


def _commands_small() -> Iterator[bytes]:
    yield encode_command([b"DEBUG", b"POPULATE", b"1000000", b"key", b"16"])


def _commands_small_random() -> Iterator[bytes]:
    rng = random.Random(11)
    for i in range(1_000_000):
        yield encode_command([b"SET", b"key:%012d" % i, rng.randbytes(32)])


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


def _commands_huge() -> Iterator[bytes]:
    """A 200 MB random string, a 2 M-field hash, a 2 M-element list, a 1 M-member sorted
    set and a 1 M-member set."""
    rng = random.Random(5)
    yield encode_command([b"SET", b"huge:string", rng.randbytes(200 << 20)])
    batch = 10_000
    for start in range(0, 2_000_000, batch):
        fields = []
        for f in range(start, start + batch):
            fields += [b"field:%d" % f, rng.randbytes(40)]
        yield encode_command([b"HSET", b"huge:hash", *fields])
        yield encode_command([b"RPUSH", b"huge:list", *(rng.randbytes(24) for _ in range(batch))])
    for start in range(0, 1_000_000, batch):
        zargs = []
        for m in range(start, start + batch):
            zargs += [repr(rng.uniform(-1e9, 1e9)).encode(), b"member:%d" % m]
        yield encode_command([b"ZADD", b"huge:zset", *zargs])
        yield encode_command(
            [
                b"SADD",
                b"huge:set",
                *(
                    b"s:%d:%s" % (m, rng.randbytes(8).hex().encode())
                    for m in range(start, start + batch)
                ),
            ]
        )


def _write_giant(path: Path) -> None:
    huge_rdb(path, 512 << 20, 1 << 30)


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


@dataclass(frozen=True)
class Dataset:
    """One RDB file to measure: how to fill a server with it, and what to run on it."""

    name: str
    about: str
    commands: Callable[[], Iterator[bytes]]  # RESP commands that fill an empty server
    measures: tuple[str, ...] = ("pipe", "restore", "native", "handoff")
    reads: bool = True  # the in-process reading figures (passthrough, decoded)
    server_args: tuple[str, ...] = ()  # for every server of this dataset (limits, ...)
    write: Callable[[Path], None] | None = None  # writes the file itself (no commands)
    rounds: int = 0  # measured in this many rounds only (0: all of them)


DATASETS = (
    Dataset("small", "1 M strings, DEBUG POPULATE (short keys, 16-byte values)", _commands_small),
    Dataset(
        "small-rand", "1 M strings, 16-byte keys, 32-byte random values", _commands_small_random
    ),
    Dataset(
        "mixed", "200 k hashes, lists, sets, zsets, streams; a third with TTLs", _commands_mixed
    ),
    Dataset("big", "4 keys of 1-2 M elements (hash, set, zset, list)", _commands_big),
    Dataset(
        "huge",
        "a 200 MB string, a 2 M-field hash, a 2 M-element list, 1 M-member zset and set",
        _commands_huge,
        measures=("pipe", "restore", "rewrite", "native", "handoff", "inspect"),
        reads=False,
        rounds=1,
    ),
    Dataset(
        "giant",
        "a 512 MB string and a 1 GB hash, written by the project's RDB writer",
        lambda: iter(()),
        measures=("restore", "rewrite", "native", "handoff", "inspect"),
        reads=False,
        write=_write_giant,
        rounds=1,
    ),
)


def build(ds: Dataset) -> Path:
    path = WORK / f"{ds.name}.rdb"
    if path.exists():
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"building {path.name} ...", flush=True)
    if ds.write is not None:
        ds.write(path)
        return path
    with RedisServer(*DEBUG, *ds.server_args) as server:
        with tempfile.TemporaryFile() as commands:
            for command in ds.commands():
                commands.write(command)
            commands.seek(0)
            subprocess.run(
                [str(server.flavour.cli), "-p", str(server.port), "--pipe"],
                stdin=commands,
                capture_output=True,
                check=True,
            )
        server.cli("SAVE")
        (server.dir / "dump.rdb").rename(path)
    return path


def restore_commands(path: Path) -> Path:
    """The file's keys as RESTORE commands, for `redis-cli --pipe` (built once)."""
    out = WORK / f"{path.stem}.restore.resp"
    if out.exists():
        return out
    with out.open("wb") as sink:
        for r in whole_keys(path):
            payload = dump_payload(r.rdb_type, r.payload, r.rdb_version)
            if r.expire_at_ms is None:
                sink.write(encode_command([b"RESTORE", r.key, b"0", payload]))
            else:
                ttl = b"%d" % r.expire_at_ms
                sink.write(encode_command([b"RESTORE", r.key, ttl, payload, b"ABSTTL"]))
    return out


def whole_keys(path: Path) -> Iterator[KeyRecord]:
    """The file's keys, each with its whole value (a big one joined from its pieces)."""
    [source] = find_inputs(path)
    for r in read_input(source):
        if type(r) is KeyRecord:
            yield r
        elif isinstance(r, BigKeyRecord):
            payload = r.head + b"".join(r.pieces()) + r.tail
            yield KeyRecord(
                r.db,
                r.key,
                r.rdb_type,
                payload,
                r.expire_at_ms,
                r.offset,
                r.rdb_version,
                r.lru_idle,
                r.lfu_freq,
                r.valkey,
            )


# -- whole processes ----------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    rss_mb: float  # the measured process's peak
    server_rss_mb: float = 0.0  # the target server's peak
    output: str = ""
    exact: bool | None = None  # DEBUG DIGEST equal to the native load's


def run_process(args: list[str], *, stdin: Path | None = None) -> Run:
    """Run a command to its end: wall time from spawn to exit, and its peak RSS."""
    env = dict(os.environ)
    # As an installed package runs: with its bytecode cache.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryFile() as out, (stdin or Path(os.devnull)).open("rb") as feed:
        start = time.perf_counter()
        proc = subprocess.Popen(args, stdin=feed, stdout=out, stderr=subprocess.STDOUT, env=env)
        peak = [0.0]
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], vmhwm_mb(proc.pid))
                done.wait(RSS_POLL_SECONDS)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        proc.wait()
        seconds = time.perf_counter() - start
        done.set()
        watcher.join()
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{text[-2000:]}")
    return Run(seconds, peak[0], output=text)


def fresh_server(ds: Dataset, rdb: Path | None = None) -> RedisServer:
    """A redis-server for one measured run, not yet started (`rdb` as its dump file:
    linked, not copied, when the file system allows)."""
    server = RedisServer(*DEBUG, *ds.server_args)
    if rdb is not None:
        target = server.dir / "dump.rdb"
        try:
            os.link(rdb, target)
        except OSError:
            shutil.copyfile(rdb, target)
    return server


def stop(server: RedisServer) -> float:
    """Stop a server; its peak RSS in MB."""
    rss = vmhwm_mb(server.process.pid) if server.process is not None else 0.0
    server.stop()
    return rss


def measure_import(ds: Dataset, path: Path, strategy: str, digest: str | None) -> Run:
    server = fresh_server(ds).start()
    try:
        args = [str(CLI), "import", str(path), "--target", f"redis://127.0.0.1:{server.port}"]
        args += ["--strategy", strategy] + (["--flush"] if strategy == "handoff" else [])
        run = run_process(args)
        if "SUCCESS" not in run.output:
            raise SystemExit(f"import failed:\n{run.output[-2000:]}")
        if digest is not None:
            run.exact = server.cli("DEBUG", "DIGEST") == digest
    finally:
        server_rss = stop(server)
    run.server_rss_mb = server_rss
    return run


def measure_pipe(ds: Dataset, resp: Path) -> Run:
    server = fresh_server(ds).start()
    try:
        run = run_process([str(server.flavour.cli), "-p", str(server.port), "--pipe"], stdin=resp)
    finally:
        server_rss = stop(server)
    run.server_rss_mb = server_rss
    return run


def _answers_ping(port: int) -> bool:
    """True once the server answers PING with PONG (not -LOADING, not refused)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def measure_native(ds: Dataset, path: Path) -> tuple[Run, str]:
    """redis-server loading the file: spawn to PONG; and the digest of what it loaded."""
    server = fresh_server(ds, rdb=path)
    start = time.perf_counter()
    server.process = subprocess.Popen(server.args, stdout=subprocess.DEVNULL)
    try:
        while not _answers_ping(server.port):
            if server.process.poll() is not None:
                raise SystemExit(f"redis-server exited: {server.log()[-2000:]}")
            time.sleep(0.001)
        seconds = time.perf_counter() - start
        digest = server.cli("DEBUG", "DIGEST")
    finally:
        rss = stop(server)
    return Run(seconds, rss, rss), digest


# -- in-process figures, each in a process of its own ---------------------------------------


def measure_read(path: Path, decode: bool) -> dict[str, float]:
    """Reading the file as an import does (`read_batches`), decoding each value that is
    not too big to hold when `decode`."""
    [source] = find_inputs(path)
    start = time.perf_counter()
    keys = 0
    for batch in read_batches(source):
        for record in batch:
            if type(record) is KeyRecord:
                keys += 1
                if decode:
                    decode_value(record)
            elif type(record) is BigKeyRecord:  # a value handed out in pieces
                keys += 1
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "keys": keys, "rss_mb": vmhwm_mb(os.getpid())}


def in_child(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


_SUMMARY_SECONDS = re.compile(r"bytes\s+in\s+([0-9.]+)\s+s")
_SUMMARY_KEYS = re.compile(r"([0-9]+)\s+keys\s+written")


def reported_seconds(run: Run) -> float:
    """The import's own timing, from its summary line (without start-up and exit)."""
    found = _SUMMARY_SECONDS.search(run.output)
    return float(found.group(1)) if found else float("nan")


# -- rounds and tables ----------------------------------------------------------------------


@dataclass
class Measured:
    ds: Dataset
    path: Path
    keys: int = 0
    digest: str | None = None
    runs: dict[str, list[Run]] | None = None
    reads: dict[str, list[dict[str, float]]] | None = None


def one_round(m: Measured) -> None:
    """Each measure of one dataset, once, in the table's order."""
    assert m.runs is not None and m.reads is not None
    ds = m.ds
    for measure in ds.measures:
        if measure == "pipe":
            run = measure_pipe(ds, restore_commands(m.path))
        elif measure == "native":
            run, _ = measure_native(ds, m.path)
        elif measure == "inspect":
            run = run_process([str(CLI), "inspect", str(m.path)])
        else:
            run = measure_import(ds, m.path, measure, m.digest)
            written = _SUMMARY_KEYS.search(run.output)
            m.keys = m.keys or (int(written.group(1)) if written else 0)
        m.runs.setdefault(measure, []).append(run)
    if ds.reads:
        for kind in ("passthrough", "decoded"):
            read = in_child("measure-read", str(m.path), kind)
            m.keys = int(read["keys"])
            m.reads.setdefault(kind, []).append(read)


def _ratios(m: Measured, measure: str) -> list[float] | None:
    assert m.runs is not None
    reference = m.runs.get(REFERENCE.get(measure, ""))
    if reference is None:
        return None
    return [ref.seconds / run.seconds for ref, run in zip(reference, m.runs[measure], strict=True)]


def print_whole_process(results: list[Measured]) -> None:
    print(
        f"\nwhole processes, each against a fresh redis-server; medians of {ROUNDS} "
        "interleaved rounds (BENCH_ROUNDS)"
    )
    header = (
        f"{'dataset':<11}{'MB':>7}{'keys':>9}  {'measure':<26}{'seconds':>8}{'keys/s':>9}"
        f"{'RSS':>8}{'server':>8}  {'ratio (median of rounds; each round)':<44}exact"
    )
    print(header)
    print("-" * len(header))
    for m in results:
        assert m.runs is not None
        size_mb = m.path.stat().st_size / 1e6
        first = True
        for measure in m.ds.measures:
            runs = m.runs[measure]
            seconds = statistics.median(r.seconds for r in runs)
            rss = max(r.rss_mb for r in runs)
            server = max(r.server_rss_mb for r in runs)
            rate = _rate(m.keys, seconds) if m.keys else ""
            head = f"{m.ds.name:<11}{size_mb:7.1f}{m.keys:9d}" if first else " " * 27
            first = False
            line = (
                f"{head}  {LABELS[measure]:<26}{seconds:8.2f}{rate:>9}{rss:7.0f}M{server:7.0f}M  "
            )
            ratios = _ratios(m, measure)
            text = ""
            if ratios is not None:
                each = " ".join(f"{r:.2f}" for r in ratios)
                text = f"{statistics.median(ratios):.2f}x {REFERENCE[measure]} ({each})"
            line += f"{text:<44}"
            if any(r.exact is not None for r in runs):
                line += "yes" if all(r.exact for r in runs) else "NO"
            print(line.rstrip())
    print(
        "\nratio = the reference's time / the import's time in the same round (1.0: as fast "
        "as redis-cli --pipe replaying RESTORE, or as redis-server loading the file); RSS = "
        "the measured process's peak, server = the redis-server's; exact: DEBUG DIGEST of "
        "the target equals that of the server that loaded the file itself."
    )


def print_memory(results: list[Measured]) -> None:
    print(f"\npeak RSS of dcs-migration against the {RSS_GOAL_MB} MB goal (largest of rounds):")
    for m in results:
        assert m.runs is not None
        cells = []
        for measure in OURS:
            runs = m.runs.get(measure)
            if runs:
                rss = max(r.rss_mb for r in runs)
                cells.append(f"{measure} {rss:.0f} MB{'' if rss < RSS_GOAL_MB else ' OVER'}")
        biggest = m.path.stat().st_size / 1e6
        print(f"  {m.ds.name:<11}({biggest:.0f} MB file)  " + ", ".join(cells))


def _rate(keys: int, seconds: float) -> str:
    rate = keys / seconds
    return f"{rate / 1e3:.0f}k" if rate >= 1e4 else f"{rate:.1f}"


def print_in_process(results: list[Measured]) -> None:
    print("\nin-process figures, same rounds (medians):")
    header = (
        f"{'dataset':<11}{'read':<12}{'seconds':>8}{'keys/s':>8}{'MB/s':>6}{'RSS':>7}    "
        f"{'import':<8}{'own time':>9}{'whole':>7}{'start+exit':>11}"
    )
    print(header)
    print("-" * len(header))
    for m in results:
        assert m.runs is not None and m.reads is not None
        size_mb = m.path.stat().st_size / 1e6
        left = []
        for kind in ("passthrough", "decoded"):
            reads = m.reads.get(kind)
            if reads:
                s = statistics.median(r["seconds"] for r in reads)
                rss = max(r["rss_mb"] for r in reads)
                rate = _rate(m.keys, s)
                left.append(f"{kind:<12}{s:8.2f}{rate:>8}{size_mb / s:6.0f}{rss:6.0f}M")
        right = []
        for strategy in ("restore", "handoff"):
            runs = m.runs.get(strategy)
            if runs:
                own = statistics.median(reported_seconds(r) for r in runs)
                whole = statistics.median(r.seconds for r in runs)
                right.append(f"{strategy:<8}{own:9.2f}{whole:7.2f}{whole - own:11.2f}")
        for n in range(max(len(left), len(right))):
            name = m.ds.name if n == 0 else ""
            cells = left[n] if n < len(left) else ""
            line = f"{name:<11}{cells:<41}    " + (right[n] if n < len(right) else "")
            print(line.rstrip())
    print(
        "\nread: the reader alone over the file, in a process of its own, with its peak RSS; "
        "import own time: what the import's summary line reports; start+exit: the rest of "
        "the whole process (interpreter, imports, connecting, printing)."
    )


# -- rdbtools, on RDB 9 twins -------------------------------------------------------------


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
            [str(server.flavour.cli), "-p", str(server.port), "--pipe"],
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
    from dcs_migration.client.capabilities import TYPE_MIN_RDB_VERSION
    from dcs_migration.formats.rdb_writer import RdbWriter

    out = WORK / f"{path.stem}.rdb9.rdb"
    if out.exists():
        return out
    writer = RdbWriter(9)
    with out.open("wb") as sink:
        sink.write(writer.header())
        for r in whole_keys(path):
            if TYPE_MIN_RDB_VERSION.get(r.rdb_type, 99) > 9:
                sink.close()
                out.unlink()
                return None
            sink.write(writer.keys([r]))
        sink.write(writer.end())
    return out


def print_rdbtools(results: list[Measured]) -> None:
    twins = [
        (m.ds, twin)
        for m in results
        if "pipe" in m.ds.measures and not m.ds.rounds and (twin := rdb9_twin(m.path)) is not None
    ]
    if not twins:
        return
    print("\nthe same keys as RDB 9 (what Redis 5 writes), which rdbtools can read:")
    for ds, twin in twins:
        rdbtools = time_rdbtools(twin)
        pipes, ours = [], []
        for _ in range(ROUNDS):
            pipes.append(measure_pipe(ds, restore_commands(twin)).seconds)
            ours.append(measure_import(ds, twin, "restore", None).seconds)
        pipe, our = statistics.median(pipes), statistics.median(ours)
        line = f"{ds.name + ' (RDB 9)':<22}  dcs-migration import {our:.2f}s ({pipe / our:.2f}x)"
        line += f"  rdbtools|pipe {rdbtools}"
        if rdbtools.endswith("s"):
            line += f" ({pipe / float(rdbtools[:-1]):.2f}x)"
        print(line + f"  pipe RESTORE {pipe:.2f}s", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "measure-read":
        print(json.dumps(measure_read(Path(sys.argv[2]), sys.argv[3] == "decoded")))
        return
    wanted = sys.argv[1:] or [ds.name for ds in DATASETS]
    unknown = set(wanted) - {ds.name for ds in DATASETS}
    if unknown:
        raise SystemExit(f"unknown datasets {sorted(unknown)}: {[d.name for d in DATASETS]}")
    # The bytecode cache an installed package has, so that no run pays for compiling.
    compileall.compile_dir(ROOT / "src", quiet=1)
    results = []
    for ds in DATASETS:
        if ds.name in wanted:
            path = build(ds)
            if "pipe" in ds.measures:
                restore_commands(path)
            # Once untimed: the digest that every import must reproduce, and the file in
            # the page cache for every measure alike.
            _, digest = measure_native(ds, path)
            results.append(Measured(ds, path, digest=digest, runs={}, reads={}))
    started = time.monotonic()
    for n in range(ROUNDS):
        for m in results:
            if m.ds.rounds and n >= m.ds.rounds:
                continue
            print(f"round {n + 1}/{ROUNDS}: {m.ds.name} ...", flush=True)
            one_round(m)
    print(f"\n{len(results)} datasets, {ROUNDS} rounds in {time.monotonic() - started:.0f} s")
    for m in results:
        print(f"  {m.ds.name}: {m.ds.about}")
    print_whole_process(results)
    print_memory(results)
    print_in_process(results)
    sys.stdout.flush()
    print_rdbtools(results)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
