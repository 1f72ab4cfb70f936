"""Errors of the sweep layer and the exit codes the CLI maps them to."""

from __future__ import annotations

__all__ = [
    "SweepError",
    "ConfigError",
    "StoreLockedError",
    "StoreError",
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_BAD_INPUT",
    "EXIT_INTERNAL",
    "EXIT_TIMEOUT",
]

# Exit codes of the `sweep` command (the interface contract in DESIGN.md).
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

    The message names the file, the field, the bad value and what is allowed.
    """

    exit_code = EXIT_BAD_INPUT


class StoreError(SweepError):
    """The store cannot be used as asked (unknown newer schema, read-only, disk full...)."""

    exit_code = EXIT_BAD_INPUT


class StoreLockedError(StoreError):
    """Another live process holds the store's write lock."""
