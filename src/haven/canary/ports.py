"""The canary's port to the cloud: boot, look, delete, find its own servers, and the cheap API probes.

Implemented by haven.cloud.openstack.canary (Nova and Keystone through openstacksdk) and
haven.canary.sim (a simulated Nova boot pipeline over the simulated cloud's hosts). Called by
haven.canary.runner only. Errors are haven's own: TemporaryError (the API cannot be reached or failed:
the canary fails and says so), PermanentError (a refusal, e.g. no such flavor), NotFound (the server is
gone).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from haven.domain.canary import Found, ServerView


class CanaryCloud(Protocol):
    async def zones(self) -> Sequence[str]:
        """The availability zones that have compute hosts."""
        ...

    async def boot(
        self, name: str, zone: str, flavor: str, image: str, network: str, metadata: Mapping[str, str]
    ) -> str:
        """Ask for a server in ``zone`` (the scheduler picks its host); its id once the API accepted it."""
        ...

    async def look(self, server_id: str) -> ServerView:
        """The server as the cloud sees it now; NotFound once it is gone."""
        ...

    async def delete(self, server_id: str) -> None:
        """Ask for its deletion (a server already gone is not an error)."""
        ...

    async def find(self, prefix: str, tag_key: str) -> Sequence[Found]:
        """Every server whose name starts with ``prefix`` and that carries the metadata key ``tag_key``."""
        ...

    async def issue_token(self) -> None:
        """Ask the identity service for a new token (a probe: raises when it cannot)."""
        ...

    async def list_servers(self) -> int:
        """List servers once (a probe); how many."""
        ...

    async def endpoints(self) -> Mapping[str, str]:
        """The service catalog's public endpoints: service type ("image", "placement") → URL."""
        ...

    async def probe_endpoint(self, url: str, timeout_s: float) -> None:
        """GET ``url`` (a version document) unauthenticated; raises when it fails or answers 5xx."""
        ...

    async def services(self) -> Sequence[tuple[str, str, str, float | None, str]]:
        """Every service in Nova's own list: (binary, host, zone, last report, state).

        state is "up", "down" (silent past Nova's service_down_time, or forced down) or "disabled: REASON"
        (up, but taken out of scheduling by an operator).
        """
        ...

    async def image_status(self, image: str) -> str:
        """The image's status in the image service ("active", "deactivated", ...); "missing": none."""
        ...

    async def image_data(self, image: str) -> int:
        """Read the start of the image's data from the image service (what a hypervisor downloads to
        boot it); how many bytes came. Raises when the download fails (its store gone, a 5xx)."""
        ...

    async def image_via_compute(self, image: str) -> None:
        """Ask the compute API for the image (Nova's image proxy: Nova's API asks the image service, as it
        does for a boot); raises when that fails."""
        ...

    async def placement_room(self, flavor: str) -> int:
        """How many allocation candidates Placement offers for ``flavor``'s resources (0: no room)."""
        ...

    def close(self) -> None:
        """Release what the driver holds (its threads); no request after this."""
        ...
