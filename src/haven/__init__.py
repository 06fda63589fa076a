"""haven: high availability and self-healing for OpenStack clouds."""

__version__ = "0.1.0"
