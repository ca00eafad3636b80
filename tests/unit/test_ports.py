"""tests/ports.py: the ports the tests' servers get never collide (a buildpack run once
found its web's port taken by another test's server, and its health check answered by it)."""

from __future__ import annotations

import socket

from tests import ports


def test_ports_come_from_below_the_ephemeral_range_and_are_never_given_twice() -> None:
    given = [ports.free_port() for _ in range(100)]
    assert len(set(given)) == len(given)
    assert all(ports.FIRST <= port < ports._ephemeral_low() for port in given)


def test_a_port_claimed_or_in_use_is_passed_over(monkeypatch) -> None:
    with socket.socket() as listening:
        listening.bind(("", 0))
        listening.listen()
        busy = listening.getsockname()[1]
        claimed, fresh = ports.free_port(), ports.free_port()
        client = ports.claims()
        assert client is not None and client.delete(ports.claim_key(fresh)) == 1
        client.close()
        draws = iter([claimed - ports.FIRST, busy - ports.FIRST, fresh - ports.FIRST])
        # The bound port is in the ephemeral range here, which the draw never picks by
        # itself; it still has to be passed over if it were drawn.
        monkeypatch.setattr(ports.secrets, "randbelow", lambda _: next(draws))
        monkeypatch.setattr(ports, "_claimed", _claims_but(busy, ports._claimed))
        assert ports.free_port() == fresh


def _claims_but(busy: int, claimed):
    """The claim check, except that the busy port's claim succeeds (as for a port no test
    took but another program is listening on)."""
    return lambda client, port: True if port == busy else claimed(client, port)
