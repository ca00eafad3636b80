"""One exception hierarchy for the domain. Each subclass's docstring is its default message."""

from __future__ import annotations

from collections.abc import Mapping


class SchedulerError(Exception):
    """An error of the scheduling service."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
        self.message = message or (self.__doc__ or "").strip()


class ConfigError(SchedulerError):
    """The configuration is invalid."""


class ScheduleError(SchedulerError):
    """The schedule is invalid."""

    def __init__(self, message: str | None = None, *, field: str = "cron") -> None:
        super().__init__(message)
        self.field = field


class NotFound(SchedulerError):
    """Not found."""


class Conflict(SchedulerError):
    """The request conflicts with the current state."""


class PreconditionFailed(SchedulerError):
    """The resource has changed since the version given in If-Match."""


class ActionError(SchedulerError):
    """The action failed."""

    def __init__(
        self,
        message: str | None = None,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class InvalidTrigger(SchedulerError):
    """The trigger is invalid."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in fields.items()))
        self.fields = dict(fields)


class PermissionDenied(SchedulerError):
    """This key may not do that."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in fields.items()))
        self.fields = dict(fields)


class TriggerLimitReached(Conflict):
    """The tenant has as many triggers as it may have."""


class WaitingRunsLimitReached(Conflict):
    """The tenant has as many runs waiting as it may have."""


class ReleaseMismatch(Conflict):
    """The restart names another release than the one of the process serving it."""

    def __init__(self, *, serving: str, requested: str) -> None:
        super().__init__(
            f"this process runs release {serving!r} but the restart names release "
            f"{requested!r}; nothing changed (retry so the call reaches the new release)"
        )
        self.serving = serving
        self.requested = requested


class KeyReused(Conflict):
    """This Idempotency-Key was already used with a different request."""


class Unresolvable(Exception):
    """The host has no address (retryable: DNS may recover)."""


class Refused(Exception):
    """The host resolves to an address the scheduler must not call."""


class AttemptTimeout(BaseException):  # noqa: N818 - an interrupt, like KeyboardInterrupt
    """The attempt ran past its timeout."""
