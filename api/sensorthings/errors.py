"""The two ways a SensorThings request fails on our side of the wire: a query we refuse (400)
and an entity that does not exist (404). Each carries the sentence a client developer needs."""

from __future__ import annotations


class StaBadRequest(ValueError):
    """The request is not one this service answers: a syntax error or an unsupported construct."""


class StaNotFound(LookupError):
    """The addressed entity or entity set does not exist."""
