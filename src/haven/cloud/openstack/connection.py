"""Opening a cloud named in clouds.yaml, as every OpenStack tool does (``--cloud NAME`` or ``OS_CLOUD``).

Called by the CLI (`haven serve --cloud NAME`, `[cloud] driver = "openstack"`) once at
start-up. A name that clouds.yaml does not know, or a clouds.yaml that cannot be read,
stops haven with a message naming the fix; credentials are never logged or shown.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
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


@contextlib.contextmanager
def clouds_yaml_file(path: Path | None) -> Iterator[None]:
    """``path`` as the clouds.yaml openstacksdk reads (OS_CLIENT_CONFIG_FILE) inside the block; None: as is.

    openstacksdk takes no file argument, only that variable, which is restored on exit.
    """
    if path is None:
        yield
        return
    previous = os.environ.get("OS_CLIENT_CONFIG_FILE")
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("OS_CLIENT_CONFIG_FILE", None)
        else:
            os.environ["OS_CLIENT_CONFIG_FILE"] = previous


def open_cloud(
    name: str | None, max_workers: int = DEFAULT_WORKERS, clouds_yaml: Path | None = None, **options: Any
) -> OpenStackCloud:
    """An OpenStackCloud on the clouds.yaml entry ``name`` (or on ``options`` alone); no request yet.

    ``clouds_yaml`` names the file to read instead of the usual places (the lab's, say); ``options``
    are openstack.connect's own (endpoint overrides, auth_type, ...), as tests use them.
    """
    try:
        with clouds_yaml_file(clouds_yaml):  # read once, here
            conn = openstack.connect(cloud=name, **options)
    except (os_exc.ConfigException, ksa_exc.ClientException) as exc:
        raise ConfigError(f"cannot use OpenStack cloud {name!r}: {exc}", CLOUDS_YAML_HINT) from None
    return OpenStackCloud(NovaApi(conn), CallPool(max_workers))
