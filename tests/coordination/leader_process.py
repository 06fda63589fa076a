"""A tiny engine stand-in for the SIGKILL test: lead through haven's elector, say so, then just run.

Usage: python leader_process.py etcd://HOST:PORT IDENTITY CLUSTER TTL
"""

from __future__ import annotations

import asyncio
import sys

from haven.coordination import elector_from_url


async def main(url: str, identity: str, cluster: str, ttl_s: int) -> None:
    elector = elector_from_url(url, identity, cluster=cluster, ttl_s=ttl_s)
    task = asyncio.create_task(elector.run())
    epoch = await elector.wait_leading()
    print(f"LEADER {epoch}", flush=True)
    await task


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
