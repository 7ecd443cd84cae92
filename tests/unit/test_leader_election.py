"""Who may take the operator's Lease, decided from the Lease as read and the time (the I/O
around it is tested with two real operator processes in tests/security/test_split_brain.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modeldeploy.controller.leader import Move, decide

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def held(by: str, renewed: datetime, seconds: int = 15) -> dict[str, object]:
    return {"holderIdentity": by, "renewTime": renewed, "leaseDurationSeconds": seconds}


def test_a_free_lease_is_taken_and_a_held_one_renewed_by_its_holder_only() -> None:
    assert decide(None, "a", NOW) is Move.ACQUIRE
    assert decide({"holderIdentity": None}, "a", NOW) is Move.ACQUIRE
    assert decide(held("a", NOW - timedelta(seconds=5)), "a", NOW) is Move.RENEW
    assert decide(held("b", NOW - timedelta(seconds=5)), "a", NOW) is Move.WAIT


def test_an_expired_lease_is_taken_over_and_not_a_moment_before() -> None:
    assert decide(held("b", NOW - timedelta(seconds=14)), "a", NOW) is Move.WAIT
    assert decide(held("b", NOW - timedelta(seconds=15)), "a", NOW) is Move.ACQUIRE
    # Times as the API server writes them (strings, microseconds, Z).
    stamp = (NOW - timedelta(seconds=20)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert decide(held("b", stamp), "a", NOW) is Move.ACQUIRE  # type: ignore[arg-type]
