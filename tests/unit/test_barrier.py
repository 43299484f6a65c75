"""The release barrier against a real serving loop on another thread."""

import asyncio
import threading

from app.election.barrier import ProbeBarrier


def _serving_loop() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    return loop, thread


def _stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_the_barrier_passes_only_after_the_step_in_progress_has_ended():
    loop, thread = _serving_loop()
    barrier = ProbeBarrier()
    barrier.bind(loop)
    in_step, release_step = threading.Event(), threading.Event()
    written: list[str] = []

    def answering_a_probe() -> None:  # a probe answer computed, not yet written
        in_step.set()
        release_step.wait(10)
        written.append("answer")

    try:
        loop.call_soon_threadsafe(answering_a_probe)
        assert in_step.wait(5)
        assert not asyncio.run(barrier.passed(0.2)), "passed while a step was in progress"
        release_step.set()
        assert asyncio.run(barrier.passed(5))
        assert written == ["answer"]
    finally:
        release_step.set()
        _stop(loop, thread)


def test_an_unbound_or_closed_loop_has_nothing_in_flight():
    barrier = ProbeBarrier()
    assert asyncio.run(barrier.passed(0))
    loop, thread = _serving_loop()
    barrier.bind(loop)
    _stop(loop, thread)
    assert asyncio.run(barrier.passed(0))
