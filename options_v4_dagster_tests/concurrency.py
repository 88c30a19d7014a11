"""Running a function in several threads released at once (the tests' concurrent writers)."""

from __future__ import annotations

import threading


def race(n: int, fn):
    """Run ``fn(i)`` in ``n`` threads released together by a barrier; their results or exceptions, in
    thread order."""
    barrier, out = threading.Barrier(n), [None] * n

    def run(i):
        barrier.wait()
        try:
            out[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects what each thread got
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out
