"""The engine alone: per-host slots and what the drain is told to claim. No database: the
recorder is a list."""
import threading

from exporter.delivery import engine
from exporter.delivery.engine import Engine, Job

from ..processes import wait_until


def blocked_job(delivery_id, host, gate, started):
    def send():
        started.release()
        gate.wait(10)
        return delivery_id
    return Job(delivery_id, host, send)


def test_a_host_is_claimed_for_until_its_slots_have_several_jobs_each_waiting():
    recorded, gate, started = [], threading.Event(), threading.Semaphore(0)
    slots = 2
    eng = Engine(recorded.extend, host_concurrency=slots, threads=16)
    enough = engine.IN_HAND_PER_SLOT * slots
    try:
        for i in range(enough - 1):
            eng.submit(blocked_job(i, "a.example", gate, started))
        for _ in range(slots):
            assert started.acquire(timeout=5)
        assert not started.acquire(timeout=0.2)  # the host's other jobs wait for its slots
        assert eng.waiting() == enough - 1 - slots
        room, busy = eng.room()
        assert "a.example" not in busy  # a claim may still top it up, while its slots are busy
        eng.submit(blocked_job(enough, "a.example", gate, started))
        room, busy = eng.room()
        assert busy == {"a.example"}  # enough in hand to keep its slots busy through the next claim
        assert room == 16 * engine.IN_HAND_PER_THREAD - enough
    finally:
        gate.set()
        assert eng.stop(timeout=10)
    assert sorted(recorded) == [*range(enough - 1), enough]  # every job sent and recorded once


def test_room_is_offered_a_claims_worth_at_a_time():
    """Not the one job each finished send makes room for: every claim costs statements and loads."""
    recorded, gate, started = [], threading.Event(), threading.Semaphore(0)
    eng = Engine(recorded.extend, host_concurrency=0, threads=8)
    in_hand = 8 * engine.IN_HAND_PER_THREAD  # the most jobs in hand
    try:
        for i in range(in_hand - 4):
            eng.submit(blocked_job(i, f"h{i}.example", gate, started))
        assert eng.room() == (4, set())  # half the threads' worth free: claim
        eng.submit(blocked_job(in_hand - 4, "last.example", gate, started))
        assert eng.room() == (0, set())  # less: wait for more sends to finish
    finally:
        gate.set()
        assert eng.stop(timeout=10)
    assert sorted(recorded) == list(range(in_hand - 3))


def test_a_slow_hosts_backlog_never_keeps_the_rest_of_the_room_from_other_hosts():
    """A claim may take more of one host than its slots can start (up to PER_HOST_CLAIM): while it
    waits behind a slow host's slots, what room is left goes to other hosts, even when that is
    less than a claim's worth, and even with few threads (the host counts as busy first)."""
    recorded, gate, started = [], threading.Event(), threading.Semaphore(0)
    eng = Engine(recorded.extend, host_concurrency=4, threads=8)
    in_hand = 8 * engine.IN_HAND_PER_THREAD - 3
    try:
        for i in range(in_hand):
            eng.submit(blocked_job(i, "slow.example", gate, started))  # 4 sending, the rest waiting
        assert eng.room() == (3, {"slow.example"})
    finally:
        gate.set()
        assert eng.stop(timeout=10)
    assert sorted(recorded) == list(range(in_hand))


def test_a_full_host_is_claimed_for_again_only_when_down_to_half_of_enough():
    """Not at its first finished send: a claim that topped it up by one job at a time would cost
    a statement and a commit per send."""
    recorded, started = [], threading.Semaphore(0)
    slots = 2
    enough = engine.IN_HAND_PER_SLOT * slots
    gates = [threading.Event() for _ in range(enough)]
    eng = Engine(recorded.extend, host_concurrency=slots, threads=16)

    def job(i):
        def send():
            started.release()
            gates[i].wait(10)
            return i
        return Job(i, "a.example", send)

    try:
        for i in range(enough):
            eng.submit(job(i))
        assert eng.room()[1] == {"a.example"}
        for i in range(enough // 2 - 1):  # all but one of the sends that bring it down to half
            gates[i].set()
            assert started.acquire(timeout=5)
        assert eng.idle(timeout=0) is False
        wait_until(lambda: len(recorded) == enough // 2 - 1, timeout=5, what="the first sends recorded")
        assert eng.room()[1] == {"a.example"}  # more than half in hand: still left out
        gates[enough // 2 - 1].set()
        wait_until(lambda: len(recorded) == enough // 2, timeout=5, what="half the sends recorded")
        assert eng.room()[1] == set()  # down to half: claimed for again
    finally:
        for gate in gates:
            gate.set()
        assert eng.stop(timeout=10)
    assert sorted(recorded) == list(range(enough))
