"""The OpenStack cloud driver: haven's Cloud protocol over Nova's API through openstacksdk.

The only package of haven that imports openstack (an import-linter contract says so).
connection opens a clouds.yaml entry; nova builds the requests with pinned
microversions; calls runs them in a bounded thread pool and errors translates what
they raise; convert maps Nova's JSON to domain snapshots; cloud ties them together.
"""

from haven.cloud.openstack.cloud import OpenStackCloud
from haven.cloud.openstack.connection import cloud_name, clouds_yaml_file, open_cloud

__all__ = ["OpenStackCloud", "cloud_name", "clouds_yaml_file", "open_cloud"]
