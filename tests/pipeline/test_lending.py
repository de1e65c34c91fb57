"""``skyrl_core.threads``: work posted for a waiting thread runs on that thread, else on the fallback
executor, and nothing is lost or run twice; ``LoopThread.run_until_complete(lend=True)`` lends."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

from skyrl_core.pipeline import LoopThread
from skyrl_core.threads import lent, run_on_waiting_thread, waiting

pytestmark = pytest.mark.timeout(60)  # a lost job would hang its waiter


@pytest.fixture
def loop():
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture
def fallback():
    ex = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fallback")
    yield ex
    ex.shutdown(wait=True)


def _where() -> tuple[str, bool]:
    return threading.current_thread().name, lent()


def test_a_lending_waiter_runs_the_job_itself(loop, fallback):
    async def work():
        return await run_on_waiting_thread(_where, fallback=fallback)

    name, was_lent = loop.run_until_complete(work(), lend=True)
    assert name == threading.current_thread().name and was_lent
    assert not lent() and not waiting()  # the flag and the registration end with the wait


def test_without_a_lending_waiter_the_fallback_runs_it(loop, fallback):
    async def work():
        return await run_on_waiting_thread(_where, fallback=fallback)

    name, was_lent = loop.run_until_complete(work())  # lend=False: this thread only waits
    assert name.startswith("fallback") and not was_lent
    name, was_lent = asyncio.run(work())  # nobody waiting at all
    assert name.startswith("fallback") and not was_lent


def test_errors_reach_the_awaiting_coroutine(loop, fallback):
    def boom():
        raise ValueError("from the job")

    async def work():
        try:
            await run_on_waiting_thread(boom, fallback=fallback)
        except ValueError as exc:
            return str(exc)
        return "no error"

    assert loop.run_until_complete(work(), lend=True) == "from the job"


def test_jobs_posted_as_the_wait_ends_still_run_once(loop, fallback):
    """The coroutine posts jobs it does not await and returns at once: whether the waiter takes
    them before it sees its future done or leaves them to the fallback, each runs exactly once."""
    ran: list[str] = []
    done = threading.Event()

    def job(i):
        ran.append(f"{i}:{threading.current_thread().name}")
        if len(ran) == 20:
            done.set()

    tasks = []  # referenced until the end, as asyncio wants

    async def post_and_return():
        for i in range(20):
            tasks.append(asyncio.ensure_future(run_on_waiting_thread(job, i, fallback=fallback)))
            if i % 5 == 0:
                await asyncio.sleep(0)
        return "returned"

    assert loop.run_until_complete(post_and_return(), lend=True) == "returned"
    assert done.wait(10), f"only {len(ran)} of 20 jobs ran"
    assert sorted(int(r.split(":")[0]) for r in ran) == list(range(20))


def test_nested_waits_lend_the_innermost(loop, fallback):
    """A job that itself waits lends while it does: the job posted then runs on the same thread."""
    outer = threading.current_thread().name

    def inner_wait():
        async def work():
            return await run_on_waiting_thread(_where, fallback=fallback)

        return loop.run_until_complete(work(), lend=True)

    async def work():
        return await run_on_waiting_thread(inner_wait, fallback=fallback)

    name, was_lent = loop.run_until_complete(work(), lend=True)
    assert name == outer and was_lent
