"""A bounded pool of worker threads for openstacksdk's blocking calls, with errors translated.

Called by OpenStackCloud for every request: openstacksdk (requests underneath) is
synchronous, so each call runs in one of ``max_workers`` dedicated threads and the
event loop never waits on the network. Calls beyond that bound queue in the executor,
so a recovery issuing hundreds of evacuations cannot open hundreds of connections.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from haven.cloud.openstack.errors import translate

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_WORKERS = 8


class CallPool:
    def __init__(self, max_workers: int = DEFAULT_WORKERS) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="haven-openstack")

    async def run(self, what: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` in a worker thread; any failure raised as a haven CloudError."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        except Exception as exc:
            raise translate(exc, what) from exc

    def close(self) -> None:
        """Stop the threads; calls already running finish first."""
        self._executor.shutdown(wait=True, cancel_futures=True)
