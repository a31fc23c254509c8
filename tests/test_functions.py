"""Function libraries are described by running them in a bounded Lua sandbox."""

from __future__ import annotations

import pytest

from dcs_migration.formats import FormatError
from dcs_migration.formats.functions import describe_library


def test_both_registration_forms_are_read() -> None:
    lib = describe_library(
        b"#!lua name=mylib\n"
        b"redis.register_function('plain', function() return 1 end)\n"
        b"redis.register_function{function_name='rich', callback=function() end,"
        b" flags={'no-writes', 'allow-oom'}, description='does things'}\n"
    )
    assert lib.name == b"mylib" and lib.engine == "LUA"
    plain, rich = lib.functions
    assert (plain.name, plain.description, plain.flags) == (b"plain", None, ())
    assert (rich.name, rich.description, rich.flags) == (
        b"rich",
        b"does things",
        ("allow-oom", "no-writes"),
    )


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (b"redis.register_function('f', function() end)", "does not start with"),
        (b"#!lua\nredis.register_function('f', function() end)", "does not name itself"),
        (b"#!js name=x\nfoo()", "only Lua"),
        (b"#!lua name=x\n", "registers no function"),
        # Those marked slow wait out the script time budget: seconds each.
        pytest.param(b"#!lua name=x\nwhile true do end", "runs too long", marks=pytest.mark.slow),
        (b"#!lua name=x\nos.execute('touch /tmp/pwned')", "does not load"),
        (b"#!lua name=x\nio.open('/etc/passwd')", "does not load"),
        (b"#!lua name=x\nrequire('socket')", "does not load"),
        pytest.param(
            b"#!lua name=x\nfor i = 1, 1e9 do local s = ('x'):rep(1e6) end",
            "runs too long",
            marks=pytest.mark.slow,
        ),
        (
            b"#!lua name=x\nlocal t = {} for i = 1, 1e9 do t[i] = ('x'):rep(1e6) .. i end",
            "not load",
        ),
        (b"#!lua name=x\nredis.register_function('bad name', function() end)", "bad function"),
        (
            b"#!lua name=x\nredis.register_function{function_name='f', callback=function() end,"
            b" flags={'no-such-flag'}}",
            "unknown flags",
        ),
        (b"#!lua name=x\nthis is not lua", "does not load"),
        (b"#!lua name=x name=y\nreturn", "more than once"),
        (b"#!lua name=a-b\nreturn", "letters, digits"),
    ],
)
def test_bad_libraries_are_format_errors(code: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        describe_library(code)
