"""Fake AWS credentials for the lab: random by default, plantable when a test hunts for leaks."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_KEY_ALPHABET = string.ascii_uppercase + string.digits


def iso8601(moment: datetime) -> str:
    """`2026-05-17T15:09:54Z`, the timestamp format of IMDS and the container endpoints."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class LabCredentials:
    """A fake temporary credential set, as IMDS or the Pod Identity agent hands it out.

    `expires_in` is applied at each response, so the served Expiration is always in the future.
    """

    access_key_id: str
    secret_access_key: str
    token: str
    expires_in: timedelta = timedelta(hours=6)

    @classmethod
    def generate(cls, prefix: str = "ASIA") -> LabCredentials:
        """Random, well-formed temporary credentials (`ASIA` + 16 characters, like AWS)."""
        return cls(
            access_key_id=prefix + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16)),
            secret_access_key=secrets.token_urlsafe(30)[:40],
            token="IQoJb3JpZ2luX2VjE" + secrets.token_urlsafe(96),
        )

    def expiration(self, now: datetime | None = None) -> str:
        """The Expiration timestamp to serve now."""
        return iso8601((now or datetime.now(UTC)) + self.expires_in)
