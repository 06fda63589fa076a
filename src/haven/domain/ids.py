"""Typed identifiers, so a host name is never passed where a server id is expected."""

from typing import NewType

HostName = NewType("HostName", str)
ServerId = NewType("ServerId", str)
SegmentId = NewType("SegmentId", str)
NotificationId = NewType("NotificationId", str)
ServerGroupId = NewType("ServerGroupId", str)
