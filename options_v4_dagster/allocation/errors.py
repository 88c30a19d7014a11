"""The allocation's typed errors (raised by :func:`.engine.allocate` and its steps)."""

from __future__ import annotations

from ..errors import OptionsV4Error

__all__ = ["AllocationError", "InsufficientCapital", "NoCandidates"]


class AllocationError(OptionsV4Error):
    """The allocation cannot be made from these inputs."""


class InsufficientCapital(AllocationError):
    """The capital cannot pay for one whole lot of any eligible candidate within the limits."""


class NoCandidates(AllocationError):
    """There are no strategy candidates (or none is eligible) to allocate."""
