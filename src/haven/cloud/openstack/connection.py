"""Opening a cloud named in clouds.yaml, as every OpenStack tool does (``--cloud NAME`` or ``OS_CLOUD``).

Called by the CLI (`haven serve --cloud NAME`, `[cloud] driver = "openstack"`) once at
start-up. A name that clouds.yaml does not know, or a clouds.yaml that cannot be read,
stops haven with a message naming the fix; credentials are never logged or shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import openstack
from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as os_exc

from haven.cloud.openstack.calls import DEFAULT_WORKERS, CallPool
from haven.cloud.openstack.cloud import OpenStackCloud
from haven.cloud.openstack.nova import NovaApi
from haven.domain.errors import ConfigError

CLOUDS_YAML_HINT = (
    "name a cloud from clouds.yaml (./clouds.yaml, ~/.config/openstack/clouds.yaml or "
    "/etc/openstack/clouds.yaml; OS_CLIENT_CONFIG_FILE names another file)"
)


def cloud_name(given: str | None, environ: Mapping[str, str]) -> str:
    """``--cloud`` or ``[cloud] name`` first, then ``OS_CLOUD``; a clear error when neither is set."""
    name = given or environ.get("OS_CLOUD", "")
    if not name:
        raise ConfigError("no OpenStack cloud named: pass --cloud NAME or set OS_CLOUD", CLOUDS_YAML_HINT)
    return name


def open_cloud(name: str | None, max_workers: int = DEFAULT_WORKERS, **options: Any) -> OpenStackCloud:
    """An OpenStackCloud on the clouds.yaml entry ``name`` (or on ``options`` alone); no request yet.

    ``options`` are openstack.connect's own (endpoint overrides, auth_type, ...), as tests use them.
    """
    try:
        conn = openstack.connect(cloud=name, **options)
    except (os_exc.ConfigException, ksa_exc.ClientException) as exc:
        raise ConfigError(f"cannot use OpenStack cloud {name!r}: {exc}", CLOUDS_YAML_HINT) from None
    return OpenStackCloud(NovaApi(conn), CallPool(max_workers))
