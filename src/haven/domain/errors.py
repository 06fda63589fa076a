"""The exception tree of haven, in one place.

HavenError
├── UserError          bad input from a person: message names what is wrong, hint says how to fix it
│   └── ConfigError    a configuration file or option that cannot be used
├── StoreUnavailable   the database cannot be reached or opened
├── CoordinationUnavailable  etcd (the coordination service) cannot be reached; names the URL
├── CoordinationError  etcd answered, but not in a way haven can use (translated in haven.coordination)
├── Deposed            a newer leader's epoch owns the notification: this engine must not act on it
└── CloudError         an effect on the cloud or a BMC failed; translated at the driver boundary
    ├── TemporaryError a retry may help (after ``delay`` seconds)
    └── PermanentError retrying will not help
        ├── NotFound
        └── Conflict   the object is in a state that forbids the action
"""


class HavenError(Exception):
    """Base of every error haven raises on purpose."""


class UserError(HavenError):
    """A mistake in input that a person can fix; shown without a stack trace."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(UserError):
    """A configuration file or option that cannot be used."""


class StoreUnavailable(UserError):
    """The state database cannot be opened or reached."""


class CloudError(HavenError):
    """An action on the cloud or on a BMC did not succeed."""


class TemporaryError(CloudError):
    """A failure that may go away: retry after ``delay`` seconds."""

    def __init__(self, message: str, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(CloudError):
    """A failure that retrying will not fix."""


class NotFound(PermanentError):
    """The named object does not exist."""


class Conflict(PermanentError):
    """The object's current state forbids the action."""


class CoordinationUnavailable(UserError):
    """etcd cannot be reached at the configured URL (named in the message); a retry may help."""


class CoordinationError(HavenError):
    """etcd answered with an error haven cannot use; translated at the coordination boundary."""


class Deposed(HavenError):
    """A step was refused by the database: a leader with a newer epoch owns the notification.

    Raised by the store's epoch test-and-set (haven.store.fencing) on a step's intent or outcome
    commit; the executor that gets it drops the notification and does nothing more to it.
    """

    def __init__(self, message: str, epoch: int, owner_epoch: int | None) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.owner_epoch = owner_epoch


class NotLeading(HavenError):
    """An effect was about to be made by an engine that no longer leads (or leads a newer term).

    Raised by the executor's leadership guard before the call, never after: the effect is not made,
    the step is left for the leader of the current term.
    """
