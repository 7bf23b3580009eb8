"""How kaudit reaches the services it talks to: a Kafka cluster and an AWS API.

This module owns the connection blocks that several sections embed or extend:
`KafkaConnection` (bootstrap servers, the OSO seed's `security:` block, extra client
settings) under the Kafka audit log, the Kafka destination and checkpoint topics, and
`AwsAccess` (region, endpoint, keys) under the S3 and CloudWatch destinations.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from kaudit.config.fields import BootstrapServers, ConfigModel, config_error
from kaudit.config.secrets import Secret, reveal

__all__ = ["SASL_MECHANISMS", "AwsAccess", "KafkaConnection", "KafkaSecurity"]

SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")


class KafkaSecurity(ConfigModel):
    """How kaudit authenticates to Kafka (the OSO seed's `security:` block)."""

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: Secret | None = None

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSecurity:
        if self.security_protocol.startswith("SASL_"):
            if self.sasl_mechanism is None:
                raise config_error(
                    "sasl",
                    f"security_protocol {self.security_protocol} needs sasl_mechanism "
                    f"(one of {', '.join(SASL_MECHANISMS)})",
                )
            if self.sasl_mechanism != "OAUTHBEARER" and (
                not self.sasl_username or self.sasl_password is None
            ):
                raise config_error(
                    "sasl",
                    f"sasl_mechanism {self.sasl_mechanism} needs sasl_username and sasl_password",
                )
        return self

    def client_settings(self) -> dict[str, str]:
        """librdkafka settings for this block."""
        out: dict[str, str] = {"security.protocol": self.security_protocol}
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": reveal(self.sasl_password),
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": reveal(self.ssl_key_password),
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        return out


class KafkaConnection(ConfigModel):
    """Where a Kafka cluster is and how to log in to it."""

    bootstrap_servers: BootstrapServers
    security: KafkaSecurity = KafkaSecurity()
    client_config: dict[str, str | int | float | bool] = {}
    """Extra librdkafka settings, applied last."""

    def client_settings(self) -> dict[str, Any]:
        """confluent-kafka settings: bootstrap servers, security, then `client_config`."""
        return {
            "bootstrap.servers": ",".join(self.bootstrap_servers),
            **self.security.client_settings(),
            **self.client_config,
        }


class AwsAccess(ConfigModel):
    """Where an AWS API is and who calls it. Credentials left unset come from boto3's
    usual chain (environment, shared files, instance or pod role)."""

    region: str | None = None
    endpoint_url: str | None = None
    """Another endpoint speaking the same API (MinIO, LocalStack, a VPC endpoint)."""
    access_key_id: str | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None
    timeout_secs: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _keys_in_pairs(self) -> AwsAccess:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise config_error(
                "aws_keys",
                "access_key_id and secret_access_key go together: set both, or neither to "
                "use the environment's credentials",
            )
        return self
