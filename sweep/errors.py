"""Every error the sweep layer raises on purpose, and the exit codes the CLI maps them to."""

from __future__ import annotations

from typing import Any

__all__ = [
    "SweepError",
    "ConfigError",
    "StoreLockedError",
    "StoreError",
    "SchedulerLostError",
    "ClusterStartError",
    "option_error",
    "config_error",
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_BAD_INPUT",
    "EXIT_INTERNAL",
    "EXIT_TIMEOUT",
]

# Exit codes of the `sweep` command (the interface contract: docs/interfaces.md).
EXIT_OK = 0  # all requested runs done
EXIT_FAILED = 1  # some run failed
EXIT_BAD_INPUT = 2  # bad configuration or input
EXIT_INTERNAL = 3  # unexpected internal error
EXIT_TIMEOUT = 124  # a run timed out (and nothing else failed)


class SweepError(Exception):
    """Base class of the errors the sweep layer raises on purpose."""

    exit_code = EXIT_INTERNAL


class ConfigError(SweepError, ValueError):
    """Bad user input: a package file, an option, a store path. One line, exit code 2.

    The message names the file, the field, the bad value and what is allowed. ``option`` is
    the Python parameter a message starts with (``timeout: bad value ...``), so that the CLI
    can name its flag instead (``--timeout: bad value ...``); ``problems`` lists every line
    of a report on many files.
    """

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, option: str | None = None, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.option = option
        self.problems = list(problems) if problems is not None else [message]


class StoreError(SweepError):
    """The store cannot be used as asked (unknown newer schema, read-only, disk full...)."""

    exit_code = EXIT_BAD_INPUT


class StoreLockedError(StoreError):
    """Another live process holds the store's write lock."""


class ClusterStartError(SweepError):
    """The local Dask cluster could not be started (its worker processes kept dying); nothing
    ran (exit 1: the requested runs are not done; run again)."""

    exit_code = EXIT_FAILED


class SchedulerLostError(SweepError):
    """The connection to the Dask scheduler was lost mid-sweep (exit 1: runs did not finish;
    run again against a scheduler to resume)."""

    exit_code = EXIT_FAILED


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def option_error(option: str, value: Any, allowed: str) -> ConfigError:
    """``<option>: bad value <value>; allowed: <allowed>`` for a bad option of the Python API."""
    return ConfigError(f"{option}: bad value {_show(value)}; allowed: {allowed}", option=option)


def config_error(problems: list[str]) -> ConfigError:
    """One ConfigError carrying every problem: the message is all lines, ``.problems`` the list."""
    return ConfigError("\n".join(problems), problems=problems)
