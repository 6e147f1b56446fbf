"""A secure local broker: SASL/SCRAM for clients, Kafka's StandardAuthorizer, one principal per service.

The client listener is ``SASL_PLAINTEXT`` with ``SCRAM-SHA-512``; the broker talks to itself on it
(inter-broker traffic, transaction markers) as the principal ``broker``. The controller listener
stays on 127.0.0.1 and uses ``SASL_PLAINTEXT`` with ``PLAIN`` (also as ``broker``): a controller
cannot check SCRAM passwords before it has read the metadata log that holds them. ``broker`` and
``admin`` are super users; ``serve``, ``monitor`` and ``train`` get only what
``driftline acl apply`` grants them (no ACL: no access, ``allow.everyone.if.no.acl.found=false``).

Passwords are random, written once at format time to ``credentials.json`` (mode 600) beside the
broker's data; the SCRAM ones go into the storage with StorageTool's ``--add-scram``.

>>> creds = Credentials({"broker": "b", "admin": "a", "serve": "s"})
>>> creds.client_config("serve")["sasl.username"], creds.client_config("serve")["security.protocol"]
('serve', 'SASL_PLAINTEXT')
>>> creds.format_arguments()[:2]
['--add-scram', 'SCRAM-SHA-512=[name=broker,password=b]']
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from driftline.errors import BrokerError

MECHANISM = "SCRAM-SHA-512"
PROTOCOL = "SASL_PLAINTEXT"
BROKER_USER = "broker"
"""The broker's own principal: inter-broker and controller traffic; a super user."""
OPERATOR = "admin"
"""The operators' principal: a super user (creates topics, publishes and promotes, applies ACLs)."""
SERVICES = ("serve", "monitor", "train")
"""One principal per service; their rights come from ``driftline acl apply``."""
USERS = (BROKER_USER, OPERATOR, *SERVICES)
SUPER_USERS = (BROKER_USER, OPERATOR)


@dataclass(frozen=True)
class Credentials:
    """Every principal's password on the secure local broker."""

    passwords: dict[str, str]

    @classmethod
    def generate(cls) -> Credentials:
        # url-safe characters only: they need no quoting in JAAS nor in StorageTool's [name=,password=]
        return cls({user: secrets.token_urlsafe(24) for user in USERS})

    def save(self, path: Path) -> None:
        """Write the file readable by its owner only (created with mode 600, never wider)."""
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self.to_json(), out, indent=2)

    @classmethod
    def load(cls, path: Path) -> Credentials:
        try:
            raw = json.loads(path.read_text())
            return cls({str(k): str(v) for k, v in raw["users"].items()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BrokerError(
                f"{path}, the secure broker's credentials, is unreadable ({exc}): the broker cannot "
                "start without them; `driftline broker start --fresh --secure` formats a new one."
            ) from exc

    def to_json(self) -> dict[str, object]:
        return {"security.protocol": PROTOCOL, "sasl.mechanism": MECHANISM, "users": self.passwords}

    def password(self, user: str) -> str:
        try:
            return self.passwords[user]
        except KeyError:
            known = ", ".join(self.passwords)
            raise BrokerError(f"The secure local broker has no principal {user!r} ({known}).") from None

    def client_config(self, user: str) -> dict[str, str]:
        """The librdkafka settings that authenticate as ``user`` (what ``-X`` takes)."""
        return {
            "security.protocol": PROTOCOL,
            "sasl.mechanism": MECHANISM,
            "sasl.username": user,
            "sasl.password": self.password(user),
        }

    def format_arguments(self) -> list[str]:
        """StorageTool flags that store every principal's SCRAM credential at format time."""
        out: list[str] = []
        for user, password in self.passwords.items():
            out += ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]
        return out

    def server_properties(self) -> str:
        """The ``server.properties`` lines of authentication and authorization."""
        broker = self.password(BROKER_USER)
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
        plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
        return "\n".join(
            [
                f"sasl.enabled.mechanisms={MECHANISM}",
                f"listener.name.sasl_plaintext.sasl.enabled.mechanisms={MECHANISM}",
                f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
                f"listener.name.sasl_plaintext.{MECHANISM.lower()}.sasl.jaas.config={scram} required "
                f'username="{BROKER_USER}" password="{broker}";',
                "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
                "sasl.mechanism.controller.protocol=PLAIN",
                f"listener.name.controller.plain.sasl.jaas.config={plain} required "
                f'username="{BROKER_USER}" password="{broker}" user_{BROKER_USER}="{broker}";',
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "allow.everyone.if.no.acl.found=false",
                "super.users=" + ";".join(f"User:{u}" for u in SUPER_USERS),
                "",
            ]
        )
