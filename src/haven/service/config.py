"""haven's one configuration object, read from a TOML file; every mistake is named with its fix.

Called by the CLI (which alone knows argv and the environment) before anything
is opened or changed, so a bad file stops haven with nothing touched.

    [database]
    url = "sqlite:////var/lib/haven/haven.db"     # or postgresql+psycopg://...
    [detection]
    heartbeat_interval_s = 1.0
    grace_s = 3.0
    gate_share = 0.5
    [recovery]
    max_parallel_evacuations = 32
    evacuate_all_instances = false
    process_all_instances = false                  # guest recovery also for VMs without HA_Enabled
    vm_restart_method = "stop_start"               # or "hard_reboot"
    crash_loop_max_restarts = 3                    # then a crashing VM is left stopped, with an alert
    crash_loop_window_s = 600.0
    watchdog_default_action = "reset"              # when no hw:watchdog_action is set; or "notify"
    return_to_service = "masakari"                 # or "automatic" (haven.domain.settings.RETURN_TO_SERVICE)
    [cloud]
    driver = "simulated"                           # the embedded default
    hosts = 30
    vms = 300
    seed = 1
    # or a real cloud from clouds.yaml (`haven serve --cloud NAME` does the same):
    # driver = "openstack"
    # name = "mycloud"                             # default: $OS_CLOUD
    # max_workers = 8                              # concurrent requests to the cloud's APIs
    [[segments]]
    name = "segment-az1"
    recovery_method = "reserved_host"
    mode = "notify"                                # or automatic (the default), dry_run
    # or, to choose the first start's segments as well (TOML allows [segments] or [[segments]]):
    # [segments]
    # bootstrap = "per-zone"                       # or "none"; see SEGMENT_BOOTSTRAPS
    # [[segments.segment]]                         # each as a [[segments]] entry above
    # name = "segment-az1"
    [fencing]                                      # see haven.fencing.config for every key
    default_driver = "none"                        # default: "sim" on the simulated cloud
    [[fencing.hosts]]
    name = "compute-1"
    driver = "redfish"
    address = "https://10.0.0.11"
    username = "admin"
    password_env = "COMPUTE1_BMC_PASSWORD"
    [publish]                                      # see PUBLISH_KEYS
    webhooks = ["https://ops.example.com/haven"]
    webhook_secret_env = "HAVEN_WEBHOOK_SECRET"
    transport_url = "rabbit://haven:secret@rabbit.example.com:5672/"
    [keystone]                                     # present: the API takes Keystone tokens
    auth_url = "http://127.0.0.1:5000/v3"
    username = "haven"                             # haven's service user (role: service)
    password_env = "HAVEN_KEYSTONE_PASSWORD"       # or password = "..." (never shown)
    project_name = "service"
    [coordination]                                 # several engines on a shared PostgreSQL store
    url = "etcd://10.0.0.5:2379"                   # default: none (one engine, no servers)
    ttl_s = 3                                      # the leader's lease; takeover within about ttl_s + 1
    cluster = "default"                            # engines with the same cluster name elect one leader
    [api]
    bind = "127.0.0.1:15868"                       # where the REST API listens (--bind wins); the default
    token_file = "/var/lib/haven/token"            # the local API token (default: HOME/token)
    [liveness]                                     # real clouds with [coordination]: the agents' channels
    management_channel = "management"              # the agents' [[agent.channels]] name that says "alive"
    second_channel = ""                            # a second network's channel: isolated, not dead
    bmc_concurrency = 8                            # BMC reads at once (only for hosts gone silent)
    bmc_timeout_s = 3.0                            # a BMC slower than this reads as "unknown"
    process_grace_s = 120.0                        # a host back (agent beating again) gets this long for
                                                   # its nova-compute to report before it counts as failed
    [controlplane]                                 # the control plane: see haven.controlplane.config
    [diagnosis]                                    # explanations' evidence: see haven.explain.config
    [backups]                                      # scheduled backups, restore drills: haven.backups.config
    [canary]                                       # scheduled test boots: see haven.canary.config
    [stateful.galera]                              # Galera's recovery loop: see haven.stateful.config

A ``[[segments]]`` entry sets only the keys it gives, at every start of ``haven serve``
(the file wins over changes made through the API since the last start).
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from haven.domain.errors import ConfigError
from haven.domain.incidents import RecoveryMethod, SegmentMode
from haven.domain.settings import RETURN_TO_SERVICE, DetectionSettings, EngineSettings, RecoverySettings
from haven.fencing.config import FencingConfig, parse_fencing
from haven.notify.publisher import PublishSettings
from haven.recovery.vm_policy import RESTART_METHODS, WATCHDOG_ACTIONS

if TYPE_CHECKING:  # imported when a config with these sections is built: see _parsed_elsewhere
    from haven.backups.config import BackupsConfig
    from haven.canary.config import CanaryConfig
    from haven.controlplane.config import ControlPlaneConfig
    from haven.explain.config import DiagnosisConfig
    from haven.stateful.config import StatefulConfig

CONFIG_FILE = "haven.toml"
DB_FILE = "haven.db"
CLOUD_DRIVERS = ("simulated", "openstack")
# What `haven serve` creates at its first start (an empty store): "per-zone", one segment per
# availability zone holding its computes; "none", nothing, as Masakari starts (segments and hosts
# come through the API). Default: per-zone on the simulated cloud, none on a real one.
SEGMENT_BOOTSTRAPS = ("per-zone", "none")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SimulatedCloudConfig:
    hosts: int = 30
    vms: int = 300
    seed: int = 1


@dataclass(frozen=True, slots=True)
class OpenStackCloudConfig:
    """``[cloud] driver = "openstack"``: which clouds.yaml entry, and how many requests at once."""

    name: str = ""  # empty: --cloud NAME, else $OS_CLOUD
    max_workers: int = 8


@dataclass(frozen=True, slots=True)
class KeystoneConfig:
    """The ``[keystone]`` section: haven's service account, used to validate callers' tokens."""

    auth_url: str = ""
    username: str = ""
    project_name: str = ""
    password: str = field(default="", repr=False)
    password_env: str = ""  # the environment variable holding the password, read by `haven serve`
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"
    cache_ttl_s: float = 60.0
    timeout_s: float = 5.0

    def resolve_password(self, environ: Mapping[str, str]) -> str:
        """The password, from the file or from ``environ[password_env]``; a clear error if missing."""
        if self.password:
            return self.password
        value = environ.get(self.password_env, "")
        if not value:
            raise ConfigError(
                f"[keystone] password_env names {self.password_env}, which is not set",
                f"export {self.password_env} with the password of Keystone user {self.username}",
            )
        return value


@dataclass(frozen=True, slots=True)
class CoordinationConfig:
    """The ``[coordination]`` section (``--coordination URL`` overrides ``url``); no url: one engine."""

    url: str | None = None
    ttl_s: int = 3
    cluster: str = "default"


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """The ``[api]`` section: where ``haven serve`` listens, and its local token (``haven lab`` sets both)."""

    bind: str = ""  # HOST:PORT; empty: --bind, else 127.0.0.1:15868 (checked by the CLI)
    token_file: str = ""  # empty: HOME/token

    @property
    def token_path(self) -> Path | None:
        return Path(self.token_file) if self.token_file else None


@dataclass(frozen=True, slots=True)
class LivenessConfig:
    """The ``[liveness]`` section, read by haven.service.liveness on a real cloud with coordination."""

    management_channel: str = "management"
    second_channel: str = ""  # empty: no second network
    bmc_concurrency: int = 8
    bmc_timeout_s: float = 3.0
    process_grace_s: float = 120.0  # nova-compute's start-up time allowed after the agent (re)appears


@dataclass(frozen=True, slots=True)
class HavenConfig:
    home: Path
    database_url: str
    engine: EngineSettings = field(default_factory=EngineSettings)
    cloud_driver: str = "simulated"
    simulated: SimulatedCloudConfig = field(default_factory=SimulatedCloudConfig)
    openstack: OpenStackCloudConfig = field(default_factory=OpenStackCloudConfig)
    segment_methods: Mapping[str, RecoveryMethod] = field(default_factory=dict)
    source: Path | None = None
    fencing: FencingConfig = field(default_factory=FencingConfig)
    publish: PublishConfig = field(default_factory=lambda: PublishConfig())
    keystone: KeystoneConfig | None = None  # None: the local token (embedded default)
    segment_modes: Mapping[str, SegmentMode] = field(default_factory=dict)
    coordination: CoordinationConfig = field(default_factory=CoordinationConfig)
    liveness: LivenessConfig = field(default_factory=LivenessConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    segment_bootstrap: str = "per-zone"  # one of SEGMENT_BOOTSTRAPS, resolved for the cloud driver
    controlplane: ControlPlaneConfig = field(default_factory=lambda: _absent("controlplane"))
    diagnosis: DiagnosisConfig = field(default_factory=lambda: _absent("diagnosis"))  # haven.explain.config
    canary: CanaryConfig = field(default_factory=lambda: _absent("canary"))
    backups: BackupsConfig = field(default_factory=lambda: _absent("backups"))
    stateful: StatefulConfig = field(default_factory=lambda: _absent("stateful"))

    @property
    def segment_names(self) -> frozenset[str]:
        """Every segment a [[segments]] entry names."""
        return frozenset(self.segment_methods) | frozenset(self.segment_modes)


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """What the commands that only read haven's state or its token need (`haven token`, `status`,
    `hosts`, `release`, `notifications`): ``load_core_config`` reads it."""

    database_url: str
    api: ApiConfig


# The sections whose parsers live in their own areas. Importing them costs about 0.2 s of CPU (pydantic and
# each area's schema; haven.explain.config leaves the explainer unimported), more than a short command needs.
SECTIONS_ELSEWHERE = frozenset({"controlplane", "diagnosis", "canary", "backups", "stateful"})


def load_config(home: Path, path: Path | None = None, cloud_name: str | None = None) -> HavenConfig:
    """Read ``path`` (or ``home/haven.toml`` when it exists); without a file, the embedded defaults.

    ``cloud_name`` (``--cloud NAME``) chooses the OpenStack driver on that clouds.yaml entry,
    whatever the file's [cloud] section says.
    """
    path, raw, where = _source(home, path)
    here = _parsed_here(home, path, raw, where, cloud_name)
    return HavenConfig(**here, **_parsed_elsewhere(raw, where))


def load_core_config(home: Path, path: Path | None = None, cloud_name: str | None = None) -> CoreConfig:
    """``load_config``'s database URL and [api] section, with the same checks and the same errors.

    A file with none of the SECTIONS_ELSEWHERE (none at all, or the lab's) is checked whole here
    without importing their modules; a file with one of them is read by ``load_config``, so that a
    mistake there still stops every command.
    """
    path, raw, where = _source(home, path)
    if raw.keys() & SECTIONS_ELSEWHERE:
        config = load_config(home, path, cloud_name)
        return CoreConfig(config.database_url, config.api)
    here = _parsed_here(home, path, raw, where, cloud_name)
    return CoreConfig(here["database_url"], here["api"])


def _source(home: Path, path: Path | None) -> tuple[Path | None, dict[str, Any], str]:
    """The file to read (``path``, else ``home/haven.toml`` if present), its tables, and its name."""
    if path is None and (home / CONFIG_FILE).is_file():
        path = home / CONFIG_FILE
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read(path)
    return path, raw, str(path) if path else "defaults"


def _parsed_here(
    home: Path, path: Path | None, raw: dict[str, Any], where: str, cloud_name: str | None
) -> dict[str, Any]:
    """HavenConfig's fields but the SECTIONS_ELSEWHERE, checked in the file's reading order."""
    sections = {"database", "detection", "recovery", "cloud", "segments", "fencing", "publish", "keystone"}
    sections |= {"coordination", "liveness", "api"}
    _only(raw, sections | SECTIONS_ELSEWHERE, where)
    database = _table(raw, "database", where)
    _only(database, {"url"}, f"{where} [database]")
    url = database.get("url", f"sqlite:///{home / DB_FILE}")
    if not isinstance(url, str) or not url:
        raise ConfigError(
            f"{where}: [database] url must be a non-empty string", 'e.g. url = "sqlite:///haven.db"'
        )
    cloud = _table(raw, "cloud", where)
    driver = cloud.pop("driver", "simulated")
    if cloud_name:
        cloud = {**(cloud if driver == "openstack" else {}), "name": cloud_name}
        driver = "openstack"
    if driver not in CLOUD_DRIVERS:
        raise ConfigError(
            f"{where}: [cloud] driver {driver!r} is not known",
            f"use one of: {', '.join(CLOUD_DRIVERS)}",
        )
    simulated, openstack = _cloud(driver, cloud, f"{where} [cloud]")
    recovery = _table(raw, "recovery", where)
    returning = _return_to_service(recovery.pop("return_to_service", "masakari"), f"{where} [recovery]")
    engine = EngineSettings(
        detection=_settings(DetectionSettings, _table(raw, "detection", where), f"{where} [detection]"),
        recovery=dataclasses.replace(
            _settings(RecoverySettings, recovery, f"{where} [recovery]"), return_to_service=returning
        ),
    )
    check_settings(engine, where)
    bootstrap, entries = _segments_section(raw.get("segments", []), where)
    methods, modes = _segments(entries, where)
    return dict(
        home=home,
        database_url=url,
        engine=engine,
        cloud_driver=driver,
        simulated=simulated,
        openstack=openstack,
        segment_methods=methods,
        source=path,
        # The simulated cloud's BMCs fence its hosts unless the file says otherwise.
        fencing=parse_fencing(raw.get("fencing"), where, "sim" if driver == "simulated" else "none"),
        publish=_publish(_table(raw, "publish", where), f"{where} [publish]"),
        keystone=_keystone(raw, where),
        segment_modes=modes,
        coordination=_coordination(_table(raw, "coordination", where), f"{where} [coordination]"),
        liveness=_liveness(_table(raw, "liveness", where), f"{where} [liveness]"),
        api=_settings(ApiConfig, _table(raw, "api", where), f"{where} [api]"),
        segment_bootstrap=bootstrap or ("per-zone" if driver == "simulated" else "none"),
    )


def _parsed_elsewhere(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """HavenConfig's SECTIONS_ELSEWHERE, each parsed by its area's module (imported only now)."""
    from haven.backups.config import parse_backups
    from haven.canary.config import parse_canary
    from haven.controlplane.config import parse_controlplane
    from haven.explain.config import parse_diagnosis
    from haven.stateful.config import parse_stateful

    return dict(
        controlplane=parse_controlplane(raw.get("controlplane"), where),
        diagnosis=parse_diagnosis(raw.get("diagnosis"), where),
        canary=parse_canary(raw.get("canary"), where),
        backups=parse_backups(raw.get("backups"), where),
        stateful=parse_stateful(raw.get("stateful"), where),
    )


def _absent(section: str) -> Any:
    """A section parsed elsewhere, as a file without it gives it (a HavenConfig built without it)."""
    return _parsed_elsewhere({}, "defaults")[section]


def _cloud(
    driver: str, table: dict[str, Any], where: str
) -> tuple[SimulatedCloudConfig, OpenStackCloudConfig]:
    """The [cloud] keys of the chosen driver; a key of the other driver is named as such."""
    if driver == "openstack":
        openstack = _settings(OpenStackCloudConfig, table, f"{where} (driver openstack)")
        if openstack.max_workers < 1:
            raise ConfigError(f"{where}: max_workers must be at least 1")
        return SimulatedCloudConfig(), openstack
    return _settings(SimulatedCloudConfig, table, f"{where} (driver simulated)"), OpenStackCloudConfig()


def _coordination(table: dict[str, Any], where: str) -> CoordinationConfig:
    url = table.pop("url", None)  # validated (etcd://HOST:PORT) when serve builds the elector
    if url is not None and (not isinstance(url, str) or not url):
        raise ConfigError(f"{where}: url must be a non-empty string", 'e.g. url = "etcd://127.0.0.1:2379"')
    config = dataclasses.replace(_settings(CoordinationConfig, table, where), url=url)
    if not isinstance(config.ttl_s, int) or config.ttl_s < 2:
        raise ConfigError(f"{where}: ttl_s must be a whole number of seconds, 2 or more",
                          "etcd raises shorter leases to 2 s; 3 is the default")  # fmt: skip
    if not isinstance(config.cluster, str) or not config.cluster or "/" in config.cluster:
        raise ConfigError(
            f"{where}: cluster must be a non-empty name without '/'", 'e.g. cluster = "default"'
        )
    return config


def _liveness(table: dict[str, Any], where: str) -> LivenessConfig:
    config = _settings(LivenessConfig, table, where)
    for key in ("management_channel", "second_channel"):
        name = getattr(config, key)
        if not isinstance(name, str) or "/" in name or (key == "management_channel" and not name):
            raise ConfigError(f"{where}: {key} must be a channel name without '/'",
                              'the name of an [[agent.channels]] entry, e.g. "management"')  # fmt: skip
    if config.second_channel == config.management_channel:
        raise ConfigError(f"{where}: second_channel must differ from management_channel")
    if not isinstance(config.bmc_concurrency, int) or config.bmc_concurrency < 1:
        raise ConfigError(f"{where}: bmc_concurrency must be a whole number, 1 or more")
    if not isinstance(config.bmc_timeout_s, int | float) or config.bmc_timeout_s <= 0:
        raise ConfigError(f"{where}: bmc_timeout_s must be a positive number of seconds")
    return config


def _return_to_service(value: object, where: str) -> str:
    """``[recovery] return_to_service``: who ends a recovered host's maintenance (RETURN_TO_SERVICE)."""
    if value in RETURN_TO_SERVICE and isinstance(value, str):
        return value
    choices = ", ".join(repr(v) for v in RETURN_TO_SERVICE)
    hint = (
        '"masakari": an operator clears on_maintenance, as with Masakari; '
        '"automatic": haven returns the host and clears it once the host is healthy again'
    )
    if isinstance(value, bool):  # the key's former form
        hint = f'{hint} (true was "automatic"; false is closest to "masakari")'
    raise ConfigError(f"{where}: return_to_service must be one of {choices}, got {value!r}", hint)


def for_drills(engine: EngineSettings) -> EngineSettings:
    """A drill's engine settings: the file's, with automatic return to service.

    A drill judges the whole cycle, the failed host back in service included, and no operator is
    there to end a maintenance (``return_to_service = "masakari"``, haven serve's default).
    """
    return dataclasses.replace(
        engine, recovery=dataclasses.replace(engine.recovery, return_to_service="automatic")
    )


def check_settings(engine: EngineSettings, where: str = "settings") -> None:
    """Refuse timings that would defeat detection's safety rules, naming the fix."""
    d, r = engine.detection, engine.recovery
    if d.heartbeat_interval_s <= 0:
        raise ConfigError(f"{where}: [detection] heartbeat_interval_s must be positive")
    if d.grace_s < 2 * d.heartbeat_interval_s:
        raise ConfigError(
            f"{where}: [detection] grace_s ({d.grace_s:g}) is shorter than two heartbeat intervals "
            f"({2 * d.heartbeat_interval_s:g} s): a host would be declared dead before the observer gate "
            "could see its neighbours fall silent",
            "make grace_s at least twice heartbeat_interval_s",
        )
    for share in ("gate_share", "cloud_gate_share", "gate_unconfirmed_share", "process_gate_share"):
        if not 0 < getattr(d, share) < 1:
            raise ConfigError(
                f"{where}: [detection] {share} must be between 0 and 1, got {getattr(d, share):g}"
            )
    if d.gate_window_s < d.grace_s + d.nova_report_interval_s:
        raise ConfigError(
            f"{where}: [detection] gate_window_s ({d.gate_window_s:g}) is shorter than grace_s plus "
            f"nova_report_interval_s ({d.grace_s + d.nova_report_interval_s:g} s): a partition rolling in "
            "waves would be seen as separate events",
            "make gate_window_s several minutes (the default is 300)",
        )
    if d.fence_budget < 0 or d.external_report_wait_s < 0:
        raise ConfigError(
            f"{where}: [detection] fence_budget and external_report_wait_s must not be negative"
        )
    if r.max_evacuate_attempts < 1:
        raise ConfigError(f"{where}: [recovery] max_evacuate_attempts must be at least 1")
    if r.max_parallel_evacuations < 1:
        raise ConfigError(f"{where}: [recovery] max_parallel_evacuations must be at least 1")
    timings = (
        "fence_poll_interval_s",
        "verify_poll_interval_s",
        "fence_timeout_s",
        "verify_timeout_s",
        "step_timeout_s",
        "hold_poll_interval_s",
        "no_target_wait_s",
    )
    for name in (*timings, "crash_loop_window_s"):
        if getattr(r, name) <= 0:
            raise ConfigError(f"{where}: [recovery] {name} must be positive")
    if r.return_to_service not in RETURN_TO_SERVICE:
        _return_to_service(r.return_to_service, f"{where} [recovery]")
    if r.vm_restart_method not in RESTART_METHODS:
        raise ConfigError(
            f"{where}: [recovery] vm_restart_method {r.vm_restart_method!r} is not known",
            f"choose one of: {', '.join(sorted(RESTART_METHODS))}",
        )
    if r.watchdog_default_action not in WATCHDOG_ACTIONS:
        raise ConfigError(
            f"{where}: [recovery] watchdog_default_action {r.watchdog_default_action!r} is not known",
            f"choose one of: {', '.join(sorted(WATCHDOG_ACTIONS))} (Nova's hw:watchdog_action values, "
            "or notify)",
        )


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror}", "check the path given to --config"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not valid TOML: {exc}", "fix the line named above"
        ) from None


def _table(raw: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{name}] must be a table", f"write it as a [{name}] section")
    return dict(value)


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}", f"known keys: {', '.join(sorted(allowed))}"
        )


def _settings(cls: type[T], table: Mapping[str, Any], where: str) -> T:
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    _only(table, set(fields), where)
    defaults = cls()
    for key, value in table.items():
        expected = type(getattr(defaults, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
            raise ConfigError(f"{where}: {key} must be a {expected.__name__}, got {value!r}")
        if expected in (int, float) and value < 0:
            raise ConfigError(f"{where}: {key} must not be negative, got {value!r}")
    return dataclasses.replace(defaults, **table)  # type: ignore[type-var]


def _keystone(raw: Mapping[str, Any], where: str) -> KeystoneConfig | None:
    if "keystone" not in raw:
        return None
    where = f"{where} [keystone]"
    keystone = _settings(KeystoneConfig, _table(raw, "keystone", where), where)
    for name in ("auth_url", "username", "project_name"):
        if not getattr(keystone, name):
            raise ConfigError(f"{where}: {name} is required", "see the [keystone] example in the README")
    if not keystone.auth_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: auth_url must be an http(s) URL", 'e.g. "http://keystone:5000/v3"')
    if bool(keystone.password) == bool(keystone.password_env):
        raise ConfigError(
            f"{where}: give exactly one of password and password_env",
            'prefer password_env = "HAVEN_KEYSTONE_PASSWORD", so the file holds no secret',
        )
    if keystone.cache_ttl_s <= 0 or keystone.timeout_s <= 0:
        raise ConfigError(f"{where}: cache_ttl_s and timeout_s must be positive")
    return keystone


def _segments_section(section: object, where: str) -> tuple[str | None, object]:
    """``[segments] bootstrap`` (None: not given) and the per-segment entries.

    The entries are ``[[segments]]`` (an array) or, beside ``bootstrap``, ``[[segments.segment]]``.
    """
    if not isinstance(section, dict):
        return None, section
    _only(section, {"bootstrap", "segment"}, f"{where} [segments]")
    bootstrap = section.get("bootstrap")
    if bootstrap is not None and bootstrap not in SEGMENT_BOOTSTRAPS:
        raise ConfigError(
            f"{where}: [segments] bootstrap must be one of "
            f"{', '.join(repr(b) for b in SEGMENT_BOOTSTRAPS)}, got {bootstrap!r}",
            'bootstrap = "per-zone" creates a segment per availability zone at the first start; '
            '"none" starts empty, as Masakari does',
        )
    return bootstrap, section.get("segment", [])


def _segments(segments: object, where: str) -> tuple[dict[str, RecoveryMethod], dict[str, SegmentMode]]:
    """The recovery methods and the modes the [[segments]] entries set, by segment name."""
    if not isinstance(segments, list):
        raise ConfigError(
            f"{where}: segments must be an array of tables",
            "write each as [[segments]] (or as [[segments.segment]] beside [segments] bootstrap)",
        )
    methods: dict[str, RecoveryMethod] = {}
    modes: dict[str, SegmentMode] = {}
    for entry in segments:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{where}: each [[segments]] needs a name", 'e.g. name = "segment-az1"')
        name = entry["name"]
        _only(entry, {"name", "recovery_method", "mode"}, f"{where} segment {name}")
        if "mode" not in entry:  # an entry that names only a segment keeps Masakari's default method
            methods[name] = _choice(RecoveryMethod, entry.get("recovery_method", "auto"), name, where)
        else:
            if "recovery_method" in entry:
                methods[name] = _choice(RecoveryMethod, entry["recovery_method"], name, where)
            modes[name] = _choice(SegmentMode, entry["mode"], name, where)
    return methods, modes


E = TypeVar("E", RecoveryMethod, SegmentMode)


def _choice(enum: type[E], value: object, segment: str, where: str) -> E:
    key = "recovery_method" if enum is RecoveryMethod else "mode"
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return enum(value)
    except ValueError:
        raise ConfigError(
            f"{where}: segment {segment} has unknown {key} {value!r}",
            f"use one of: {', '.join(m.value for m in enum)}",
        ) from None


# ---- [publish]: where haven publishes failures and recovery progress (haven.notify) ----------

PUBLISH_KEYS = {
    "webhooks",  # URLs; each gets every event as a signed JSON POST
    "webhook_secret",  # the HMAC key, or better:
    "webhook_secret_env",  # the name of the environment variable that holds it
    "transport_url",  # rabbit://user:password@host:port/vhost: OpenStack-style notifications
    "topic",  # default "notifications", as OpenStack services use
    "publisher_host",  # publisher_id becomes haven.<this>; default: this machine's name
}


@dataclass(frozen=True, slots=True)
class PublishConfig:
    webhooks: tuple[str, ...] = ()
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_secret_env: str | None = None
    transport_url: str | None = field(default=None, repr=False)
    topic: str = "notifications"
    publisher_host: str | None = None
    settings: PublishSettings = field(default_factory=PublishSettings)

    @property
    def enabled(self) -> bool:
        return bool(self.webhooks or self.transport_url)

    def secret(self, environ: Mapping[str, str], where: str = "[publish]") -> bytes:
        """The webhook secret, read from the environment when so configured (the CLI passes os.environ)."""
        if self.webhook_secret_env is not None:
            value = environ.get(self.webhook_secret_env, "")
            if not value:
                raise ConfigError(
                    f"{where}: webhook_secret_env names {self.webhook_secret_env}, which is not set or empty",
                    f"export {self.webhook_secret_env}=<the secret the webhook receivers check>",
                )
            return value.encode()
        return (self.webhook_secret or "").encode()


def _publish(table: dict[str, Any], where: str) -> PublishConfig:
    settings_keys = {f.name for f in dataclasses.fields(PublishSettings)}
    _only(table, PUBLISH_KEYS | settings_keys, where)
    settings = _settings(PublishSettings, {k: table.pop(k) for k in list(table) if k in settings_keys}, where)
    for name in ("first_retry_s", "max_retry_s", "give_up_after_s", "attempt_timeout_s", "batch"):
        if getattr(settings, name) <= 0:
            raise ConfigError(f"{where}: {name} must be positive")
    webhooks = table.get("webhooks", [])
    if not isinstance(webhooks, list) or not all(isinstance(u, str) for u in webhooks):
        raise ConfigError(
            f"{where}: webhooks must be an array of URLs", 'e.g. webhooks = ["https://ops/haven"]'
        )
    for url in webhooks:
        if not url.startswith(("http://", "https://")) or len(url.split("/")[2:3][0]) == 0:
            raise ConfigError(f"{where}: webhooks: {url.split('?')[0]!r} is not an http(s) URL")
    for key in ("webhook_secret", "webhook_secret_env", "transport_url", "topic", "publisher_host"):
        if key in table and (not isinstance(table[key], str) or not table[key]):
            raise ConfigError(f"{where}: {key} must be a non-empty string")
    if "webhook_secret" in table and "webhook_secret_env" in table:
        raise ConfigError(f"{where}: give webhook_secret or webhook_secret_env, not both")
    if webhooks and not ("webhook_secret" in table or "webhook_secret_env" in table):
        raise ConfigError(
            f"{where}: webhooks need a secret to sign with",
            'set webhook_secret_env = "HAVEN_WEBHOOK_SECRET" (and export it), or webhook_secret',
        )
    transport_url = table.get("transport_url")
    if transport_url is not None and not transport_url.startswith(("rabbit://", "kombu+")):
        raise ConfigError(
            f"{where}: transport_url must be a rabbit:// URL",
            'e.g. transport_url = "rabbit://user:password@host:5672/"',
        )
    return PublishConfig(
        webhooks=tuple(webhooks),
        webhook_secret=table.get("webhook_secret"),
        webhook_secret_env=table.get("webhook_secret_env"),
        transport_url=transport_url,
        topic=table.get("topic", "notifications"),
        publisher_host=table.get("publisher_host"),
        settings=settings,
    )
