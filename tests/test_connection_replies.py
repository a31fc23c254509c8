"""Replies arrive in chunks of whatever size the network makes: a run of +OK replies is
counted without parsing even when a chunk ends inside one, and the cut reply is
completed by the next chunk, whether that one is more +OK lines or anything else.

A real redis-server cannot be made to cut its replies at a chosen byte, so the peer here
is a loopback socket that sends the chunks a test lays out, one at a time."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import hiredis
import pytest

from dcs_migration.client.connection import Connection
from dcs_migration.client.endpoint import Endpoint

OK = b"+OK\r\n"
ANY = 1 << 30


@pytest.fixture
def pair() -> Iterator[tuple[Connection, socket.socket]]:
    accepted: list[socket.socket] = []

    def answer_ping(listener: socket.socket) -> None:
        """A connection starts with PING (the password waits for a Redis-like answer)."""
        peer, _ = listener.accept()
        accepted.append(peer)
        assert peer.recv(64) == b"*1\r\n$4\r\nPING\r\n"
        peer.sendall(b"+PONG\r\n")

    with socket.create_server(("127.0.0.1", 0)) as listener:
        greeter = threading.Thread(target=answer_ping, args=(listener,))
        greeter.start()
        conn = Connection(Endpoint("127.0.0.1", listener.getsockname()[1]), timeout=10)
        conn.connect()
        greeter.join()
        peer = accepted[0]
    try:
        yield conn, peer
    finally:
        conn.close()
        peer.close()


def test_a_run_of_ok_cut_inside_a_reply_is_counted_and_completed(
    pair: tuple[Connection, socket.socket],
) -> None:
    conn, peer = pair
    peer.sendall(OK * 3 + b"+O")
    assert conn.receive_if_only(OK, ANY) == 3
    peer.sendall(b"K\r\n" + OK + b"+OK\r")
    assert conn.receive_if_only(OK, ANY) == 2
    peer.sendall(b"\n")
    assert conn.receive_if_only(OK, ANY) == 1


def test_a_cut_ok_followed_by_another_reply_goes_to_the_parser_whole(
    pair: tuple[Connection, socket.socket],
) -> None:
    conn, peer = pair
    peer.sendall(OK + b"+")
    assert conn.receive_if_only(OK, ANY) == 1
    peer.sendall(b"OK\r\n-ERR refused\r\n:5\r\n")
    assert conn.receive_if_only(OK, ANY) == 0
    assert conn.read_reply() == b"OK"
    error = conn.read_reply()
    assert isinstance(error, hiredis.ReplyError) and str(error) == "ERR refused"
    assert conn.replies_ready() == [5]


def test_a_chunk_that_is_not_a_run_of_ok_is_parsed(
    pair: tuple[Connection, socket.socket],
) -> None:
    conn, peer = pair
    peer.sendall(b"+OK\r\n+QUEUED\r\n")
    assert conn.receive_if_only(OK, ANY) == 0
    assert [conn.read_reply(), *conn.replies_ready()] == [b"OK", b"QUEUED"]
    peer.sendall(b"+O")  # too short to count anything: left to the parser
    assert conn.receive_if_only(OK, ANY) == 0
    peer.sendall(b"K\r\n")
    assert conn.read_reply() == b"OK"
