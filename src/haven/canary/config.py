"""haven.toml's ``[canary]``: scheduled test boots per availability zone, and the cheap API probes.

Called by haven.service.config (which reads the file); pure. One pydantic schema (unknown keys refused,
types and ranges checked); every mistake becomes a ConfigError naming the key. Absent section: no canary.

    [canary]
    flavor = "m1.tiny"            # a flavor name or id (required on a real cloud)
    image = "cirros"              # an image id (required on a real cloud)
    network = "none"              # "none" (no port; Nova 2.37+), "auto", or a network id
    zones = []                    # empty: every zone with compute hosts
    interval_s = 300.0            # a round (probes, then one boot per zone) this often
    poll_s = 1.0                  # how often a booting canary is looked at (each phase's resolution)
    boot_timeout_s = 300.0        # not ACTIVE by then: failed
    delete_timeout_s = 120.0
    slow_s = 120.0                # ACTIVE later than this: slow (a symptom too)
    probes = true                 # token issue and server list before each round
    slow_k = 6.0                  # slow above median + max(floor, min(slow_k * MAD, (ratio - 1) * median))
    slow_floor_s = 1.5            # that floor: never slow within this many seconds of the median
    slow_ratio = 4.0              # slow_k x MAD widens the limit to at most this many times the median
    slow_history = 20             # the median and MAD of the probe's last this many passing answers
    slow_min_history = 5          # fewer passing answers: no baseline, never slow
    slow_confirm = 2              # more asks of every passing probe (1 s apart); their median is judged
    tag = "haven"                 # several havens on one cloud: each cleans only its own canaries
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from haven.canary.model import CanarySettings
from haven.canary.slow import SlowSettings
from haven.domain.errors import ConfigError


class _Canary(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    flavor: str = ""
    image: str = ""
    network: str = Field(default="none", min_length=1)
    zones: list[str] = []
    interval_s: float = Field(default=300.0, ge=1)
    poll_s: float = Field(default=1.0, gt=0)
    boot_timeout_s: float = Field(default=300.0, gt=0)
    delete_timeout_s: float = Field(default=120.0, gt=0)
    slow_s: float = Field(default=120.0, gt=0)
    probes: bool = True
    slow_k: float = Field(default=6.0, gt=0)
    slow_floor_s: float = Field(default=1.5, ge=0)
    slow_ratio: float = Field(default=4.0, gt=1)
    slow_history: int = Field(default=20, ge=1)
    slow_min_history: int = Field(default=5, ge=1)
    slow_confirm: int = Field(default=2, ge=0)
    tag: str = Field(default="haven", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True, slots=True)
class CanaryConfig:
    enabled: bool = False
    settings: CanarySettings = field(default_factory=CanarySettings)


def parse_canary(section: object, where: str) -> CanaryConfig:
    """``section`` is the raw ``[canary]`` table (None when absent: no canary)."""
    if section is None:
        return CanaryConfig()
    where = f"{where} [canary]"
    try:
        raw = _Canary.model_validate(section)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "the section"
        raise ConfigError(
            f"{where}: {key}: {first['msg']}", "see haven.canary.config for every key"
        ) from None
    settings = CanarySettings(
        zones=tuple(raw.zones),
        flavor=raw.flavor,
        image=raw.image,
        network=raw.network,
        tag=raw.tag,
        interval_s=raw.interval_s,
        poll_s=raw.poll_s,
        boot_timeout_s=raw.boot_timeout_s,
        delete_timeout_s=raw.delete_timeout_s,
        slow_s=raw.slow_s,
        probes=raw.probes,
        slow=SlowSettings(
            raw.slow_k,
            raw.slow_floor_s,
            raw.slow_ratio,
            raw.slow_history,
            raw.slow_min_history,
            raw.slow_confirm,
        ),
    )
    return CanaryConfig(True, settings)


def require_real(config: CanaryConfig, where: str) -> None:
    """On a real cloud a canary needs a flavor and an image: a ConfigError says which is missing."""
    missing = [key for key in ("flavor", "image") if not getattr(config.settings, key)]
    if config.enabled and missing:
        raise ConfigError(
            f"{where} [canary]: {' and '.join(missing)} missing: a real cloud's canary boots a real server",
            'e.g. flavor = "m1.tiny" and image = "<an image id>" (`openstack image list`)',
        )
