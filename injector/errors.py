"""The injector's exception hierarchy (the whole tree: ``injector/__init__.py``).

Every message names the thing, the problem and the fix. The webhook turns an
``InjectionDenied`` into ``allowed: false`` with that message, a ``BadReview``
into HTTP 400, and the CLI turns any ``InjectorError`` into one line on stderr
and a non-zero exit code.
"""

from __future__ import annotations


class InjectorError(Exception):
    """Base class of every error the injector raises on purpose."""

    exit_code = 1


class ConfigError(InjectorError):
    """Settings, a profile or a command-line value is invalid."""

    exit_code = 2


class InjectionDenied(InjectorError):
    """The pod cannot be injected as asked: the admission is denied with this message.

    ``warnings``: what the pod should also hear about (unknown annotation keys
    with the nearest known one), sent as admission warnings with the denial.
    """

    warnings: tuple[str, ...] = ()


class NameCollision(InjectionDenied):
    """The pod already has a container, volume, port or mount the injector would add."""


class UnknownProfile(InjectionDenied):
    """The pod names a SidecarProfile the injector does not know."""


class NotAPod(InjectorError):
    """A pod, or a pod template in a manifest, lacks a field the injector reads or has
    it in the wrong shape (the webhook answers HTTP 400, ``inject`` names the object)."""


class BadReview(InjectorError):
    """The AdmissionReview itself is malformed (HTTP 400)."""
