"""The failure-domain audit (``haven audit``): what one domain's loss would break, found before it happens.

``findings`` judges a declared layout (pure); ``ceph`` reads recorded ``ceph osd tree`` and ``ceph osd
crush rule dump`` JSON; ``capacity`` asks the recovery planner whether each segment survives losing
its largest host or rack.
"""
