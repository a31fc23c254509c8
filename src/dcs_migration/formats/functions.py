"""What a function library declares: its name, engine and functions.

A library's code names itself in its shebang (`#!lua name=mylib`) and registers its
functions when it runs, so the only exact way to list them is to run it, as Redis does
on FUNCTION LOAD: in a Lua 5.1 sandbox that offers `redis.register_function` and
nothing that reaches outside, bounded in CPU time and memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lupa import lua51

from dcs_migration.formats.errors import FormatError

_SHEBANG = re.compile(rb"^#!(?P<engine>\S+)(?P<params>[^\n]*)")
_FUNCTION_NAME = re.compile(rb"^[A-Za-z0-9_]+\Z")
KNOWN_FLAGS = frozenset(
    {"no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys"}
)
_MAX_MEMORY = 64 << 20
_MAX_CPU_SECONDS = 2.0

_LOADER = """
local code = ...
local registered = {}
local function register_function(a, b)
  local entry
  if type(a) == 'table' then
    entry = {name = a.function_name, description = a.description, flags = a.flags,
             callback = a.callback}
    for k, _ in pairs(a) do
      if k ~= 'function_name' and k ~= 'callback' and k ~= 'flags' and k ~= 'description' then
        error('unknown argument given to register_function: ' .. tostring(k))
      end
    end
  else
    entry = {name = a, callback = b}
  end
  if type(entry.name) ~= 'string' then error('function name must be a string') end
  if type(entry.callback) ~= 'function' then error('callback must be a function') end
  if entry.description ~= nil and type(entry.description) ~= 'string' then
    error('description must be a string')
  end
  local flags = {}
  if entry.flags ~= nil then
    if type(entry.flags) ~= 'table' then error('flags must be a table') end
    for _, f in ipairs(entry.flags) do
      if type(f) ~= 'string' then error('flags must be strings') end
      flags[#flags + 1] = f
    end
  end
  registered[#registered + 1] = {entry.name, entry.description, flags}
end
local noop = function() end
local env = {
  redis = {register_function = register_function, log = noop, setresp = noop,
           LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3},
  string = string, table = table, math = math, pairs = pairs, ipairs = ipairs,
  type = type, tostring = tostring, tonumber = tonumber, error = error, pcall = pcall,
  assert = assert, select = select, unpack = unpack, next = next,
  setmetatable = setmetatable, getmetatable = getmetatable, rawget = rawget,
  rawset = rawset, rawequal = rawequal,
}
local fn, err = loadstring(code, '@user_function')
if not fn then return false, err end
setfenv(fn, env)
local deadline = os.clock() + %s
debug.sethook(function()
  if os.clock() > deadline then error('library code runs too long') end
end, '', 1000)
local ok, res = pcall(fn)
debug.sethook()
if not ok then return false, tostring(res) end
return true, registered
""".replace("%s", str(_MAX_CPU_SECONDS))


@dataclass(frozen=True)
class FunctionInfo:
    name: bytes
    description: bytes | None
    flags: tuple[str, ...]


@dataclass
class LibraryInfo:
    """A library as FUNCTION LIST describes it."""

    name: bytes
    engine: str
    code: bytes
    functions: list[FunctionInfo] = field(default_factory=list)


def describe_library(code: bytes) -> LibraryInfo:
    """Name, engine and functions of a library, or FormatError saying why it is invalid."""
    match = _SHEBANG.match(code)
    if match is None:
        raise FormatError("function library code does not start with a '#!<engine>' line")
    engine = match.group("engine").decode("utf-8", "replace")
    name = None
    for param in match.group("params").split():
        # Redis splits the line as arguments (a quoted token loses its quotes) and takes
        # `name=` in any case.
        param = _unquoted(param)
        if param[:5].lower() != b"name=":
            raise FormatError(f"function library has an unknown shebang parameter {param!r}")
        if name is not None:
            raise FormatError("function library names itself more than once")
        name = _unquoted(param[5:])
    if not name:
        raise FormatError("function library does not name itself (#!lua name=...)")
    if not _FUNCTION_NAME.match(name):
        raise FormatError(f"function library name {name!r} is not letters, digits and '_'")
    if engine.lower() != "lua":
        raise FormatError(f"function library {name!r} uses engine {engine!r}; only Lua exists")
    # The shebang line stays as an empty line so that line numbers in errors hold.
    body = b"\n" + code[match.end() :].split(b"\n", 1)[-1] if b"\n" in code else b""
    functions = _run_sandboxed(body, name)
    if not functions:
        raise FormatError(f"function library {name!r} registers no function")
    return LibraryInfo(name, "LUA", code, sorted(functions, key=lambda f: f.name))


def _unquoted(token: bytes) -> bytes:
    if len(token) >= 2 and token[0] == token[-1] and token[:1] in (b'"', b"'"):
        return token[1:-1]
    return token


def _run_sandboxed(body: bytes, library: bytes) -> list[FunctionInfo]:
    runtime = lua51.LuaRuntime(
        unpack_returned_tuples=True,
        encoding=None,
        register_eval=False,
        register_builtins=False,
        max_memory=_MAX_MEMORY,
    )
    try:
        ok, result = runtime.execute(_LOADER.encode(), body)
    except Exception as exc:  # lupa raises its own errors, including LuaMemoryError
        raise FormatError(f"function library {library!r} does not load: {exc}") from None
    if not ok:
        reason = _bytes(result).decode("utf-8", "replace")
        raise FormatError(f"function library {library!r} does not load: {reason}")
    functions: list[FunctionInfo] = []
    seen: set[bytes] = set()
    for entry in _lua_list(result):
        name, description, flags_table = _lua_list(entry, 3)
        fname = _bytes(name)
        if not _FUNCTION_NAME.match(fname):
            raise FormatError(f"function library {library!r}: bad function name {fname!r}")
        if fname in seen:
            raise FormatError(f"function library {library!r} registers {fname!r} twice")
        seen.add(fname)
        flags = tuple(sorted(_bytes(f).decode("utf-8", "replace") for f in _lua_list(flags_table)))
        unknown = set(flags) - KNOWN_FLAGS
        if unknown:
            raise FormatError(f"function {fname!r} has unknown flags {sorted(unknown)}")
        functions.append(
            FunctionInfo(fname, None if description is None else _bytes(description), flags)
        )
    return functions


def _lua_list(table: Any, size: int | None = None) -> list[Any]:
    n = size if size is not None else len(table)
    return [table[i] for i in range(1, n + 1)]


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()
