"""One exception hierarchy for the domain. Each subclass's docstring is its default message."""

from __future__ import annotations


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
