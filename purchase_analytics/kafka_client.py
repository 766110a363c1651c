"""Client security settings, read once, in one place, for every Kafka client.

`KafkaSecurity.from_settings(load_settings())` reads KAFKA_SECURITY_PROTOCOL,
KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD (or
KAFKA_SASL_PASSWORD_FILE), KAFKA_SSL_CA_LOCATION and, for mutual TLS,
KAFKA_SSL_CERT_LOCATION / KAFKA_SSL_KEY_LOCATION. Each client library gets its own
option names from it: `kafka_python_kwargs()`, `confluent_config()` and
`spark_options()` (the `kafka.`-prefixed options of Spark's Kafka source and sink,
with PEM trust and key stores). The password is a `Secret`: it prints as `***`.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .defaults import setting

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_JAAS_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


class Secret:
    """A string that never shows itself in a repr, str, f-string or log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self):  # no pickling into a checkpoint or a Spark closure by accident
        raise TypeError("a Secret is not picklable")


class SecurityConfigError(ValueError):
    pass


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = field(default=None, repr=False)
    ssl_ca_location: str | None = None  # PEM file with the CA(s) that signed the brokers' certificates
    ssl_cert_location: str | None = None  # mutual TLS: the client's PEM certificate
    ssl_key_location: str | None = None  # mutual TLS: its unencrypted PKCS#8 PEM key

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol.endswith("SSL")

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> KafkaSecurity:
        protocol = setting(settings, "KAFKA_SECURITY_PROTOCOL").upper()
        if protocol not in PROTOCOLS:
            raise SecurityConfigError(f"KAFKA_SECURITY_PROTOCOL={protocol!r} is not one of {', '.join(PROTOCOLS)}")
        mechanism = username = password = None
        if protocol.startswith("SASL_"):
            mechanism = setting(settings, "KAFKA_SASL_MECHANISM").upper()
            if mechanism not in MECHANISMS:
                raise SecurityConfigError(f"KAFKA_SASL_MECHANISM={mechanism!r} is not one of {', '.join(MECHANISMS)}")
            username = settings.get("KAFKA_SASL_USERNAME")
            if not username:
                raise SecurityConfigError(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME")
            password = _read_password(settings)
        ca, cert, key = (settings.get(n) for n in ("KAFKA_SSL_CA_LOCATION", "KAFKA_SSL_CERT_LOCATION", "KAFKA_SSL_KEY_LOCATION"))
        if bool(cert) != bool(key):
            raise SecurityConfigError("mutual TLS needs both KAFKA_SSL_CERT_LOCATION and KAFKA_SSL_KEY_LOCATION")
        for name, path in (("KAFKA_SSL_CA_LOCATION", ca), ("KAFKA_SSL_CERT_LOCATION", cert), ("KAFKA_SSL_KEY_LOCATION", key)):
            if path and not Path(path).is_file():
                raise SecurityConfigError(f"{name}={path} does not exist")
        return cls(protocol, mechanism, username, password, ca, cert, key)

    def describe(self) -> str:
        """For start-up lines: what is used, never the password."""
        if self.protocol == "PLAINTEXT":
            return "PLAINTEXT"
        who = f" as '{self.sasl_username}' ({self.sasl_mechanism})" if self.uses_sasl else ""
        return f"{self.protocol}{who}" + (" with a client certificate" if self.ssl_cert_location else "")

    def kafka_python_kwargs(self) -> dict:
        kwargs: dict = {"security_protocol": self.protocol}
        if self.uses_sasl:
            kwargs.update(
                sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username, sasl_plain_password=self.sasl_password.reveal()
            )
        if self.uses_tls:
            kwargs.update(ssl_check_hostname=True)
            if self.ssl_ca_location:
                kwargs["ssl_cafile"] = self.ssl_ca_location
            if self.ssl_cert_location:
                kwargs.update(ssl_certfile=self.ssl_cert_location, ssl_keyfile=self.ssl_key_location)
        return kwargs

    def confluent_config(self) -> dict:
        conf: dict = {"security.protocol": self.protocol}
        if self.uses_sasl:
            conf.update(
                {"sasl.mechanism": self.sasl_mechanism, "sasl.username": self.sasl_username, "sasl.password": self.sasl_password.reveal()}
            )
        if self.uses_tls:
            if self.ssl_ca_location:
                conf["ssl.ca.location"] = self.ssl_ca_location
            if self.ssl_cert_location:
                conf.update({"ssl.certificate.location": self.ssl_cert_location, "ssl.key.location": self.ssl_key_location})
        return conf

    def spark_options(self) -> dict[str, str]:
        """`kafka.`-prefixed options for Spark's Kafka source and sink (Java client names).
        The JAAS line holds the password: Spark redacts options matching `password` in
        plans and UIs, and the Java client logs it as [hidden]."""
        opts = {"kafka.security.protocol": self.protocol}
        if self.uses_sasl:
            user = self.sasl_username.replace("\\", "\\\\").replace('"', '\\"')
            pwd = self.sasl_password.reveal().replace("\\", "\\\\").replace('"', '\\"')
            opts["kafka.sasl.mechanism"] = self.sasl_mechanism
            opts["kafka.sasl.jaas.config"] = f'{_JAAS_MODULES[self.sasl_mechanism]} required username="{user}" password="{pwd}";'
        if self.uses_tls:
            if self.ssl_ca_location:
                opts.update({"kafka.ssl.truststore.type": "PEM", "kafka.ssl.truststore.location": self.ssl_ca_location})
            if self.ssl_cert_location:
                opts.update({"kafka.ssl.keystore.type": "PEM", "kafka.ssl.keystore.location": _pem_keystore(self)})
        return opts


def _read_password(settings: Mapping[str, str]) -> Secret:
    if settings.get("KAFKA_SASL_PASSWORD_FILE"):
        path = Path(settings["KAFKA_SASL_PASSWORD_FILE"])
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise SecurityConfigError(f"KAFKA_SASL_PASSWORD_FILE={path}: {exc.strerror}") from None
    else:
        value = settings.get("KAFKA_SASL_PASSWORD", "")
    if not value:
        raise SecurityConfigError("SASL needs KAFKA_SASL_PASSWORD_FILE (preferred) or KAFKA_SASL_PASSWORD")
    return Secret(value)


def _pem_keystore(security: KafkaSecurity) -> str:
    """The Java client's PEM keystore is one file holding the key and then the certificate
    chain: the key file itself when it holds both, else one built beside the key (0600),
    or in a private temporary folder when that folder is read-only (a mounted secret)."""
    key, cert = Path(security.ssl_key_location), Path(security.ssl_cert_location)
    if key == cert or "BEGIN CERTIFICATE" in key.read_text():
        return str(key)
    text = key.read_text().rstrip() + "\n" + cert.read_text()
    for folder in (key.parent, None):
        combined = (Path(folder) if folder else Path(tempfile.mkdtemp(prefix="kafka-keystore-"))) / (key.stem + ".keystore.pem")
        try:
            if not combined.exists() or combined.read_text() != text:
                combined.touch(mode=0o600)
                combined.write_text(text)
            return str(combined)
        except OSError:
            continue
    raise SecurityConfigError(f"cannot write a PEM keystore for {key}")


# ------------------------------------------------------------------ clear failures


class ClientErrorLog(logging.Handler):
    """kafka-python retries a refused login until its bootstrap timeout and then reports a
    timeout only; this keeps what it logged on the way (the real cause). A context manager."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.messages) < 200:
            self.messages.append(record.getMessage())

    def quiet_logger(self) -> logging.Logger:
        """For confluent-kafka's `logger`: librdkafka's lines come here, not to stderr."""
        logger = logging.getLogger("purchase_analytics.librdkafka")
        logger.propagate = False
        logger.handlers = [self]
        return logger

    def __enter__(self) -> ClientErrorLog:
        logging.getLogger("kafka").addHandler(self)
        return self

    def __exit__(self, *_exc) -> None:
        logging.getLogger("kafka").removeHandler(self)


def explain_failure(
    exc: BaseException | str,
    security: KafkaSecurity,
    bootstrap_servers: str,
    topic: str | None = None,
    action: str = "use",
    log: ClientErrorLog | None = None,
) -> str | None:
    """One line naming the cause (authentication, TLS, authorization) for a client error,
    or None when it is none of these (e.g. the broker is simply down)."""
    texts = [f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else str(exc), *(log.messages if log else [])]
    who = f"user '{security.sasl_username}'" if security.uses_sasl else "this client"
    for text in texts:
        lowered = text.lower()
        if "authorization" in lowered or "not authorized" in lowered:
            what = f"topic '{topic}'" if topic else "this resource"
            error = re.search(r"\w*(AuthorizationFailedError|AUTHORIZATION_FAILED)", text)
            error = error.group(0) if error else "denied"
            return f"authorization failed: {who} may not {action} {what} at {bootstrap_servers} ({error}); ask for an ACL"
    for text in texts:
        lowered = text.lower()
        # kafka-python, unknown SCRAM user: the broker answered ApiVersions (so TLS worked), then hung up mid-login
        dropped_in_login = security.uses_sasl and "broker_version=(" in lowered and "socket disconnected" in lowered
        if "authentication" in lowered or "invalid credentials" in lowered or dropped_in_login:
            return (
                f"authentication failed: {who} could not log in to {bootstrap_servers} with {security.sasl_mechanism} "
                f"(wrong password or unknown user)"
            )
    for text in texts:
        lowered = text.lower()
        if "certificate" in lowered or "handshake" in lowered:
            return f"TLS failed with {bootstrap_servers}: {_short(text)} (check KAFKA_SSL_CA_LOCATION and the broker's host name)"
    return None


def diagnose_connection(security: KafkaSecurity, bootstrap_servers: str, timeout_s: float = 3.0) -> str | None:
    """No broker answered: tell a TLS port met by a plaintext client (or the reverse)
    apart from a broker that is down, by trying a TLS handshake on the first address."""
    host, _, port = bootstrap_servers.split(",")[0].strip().rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host or "localhost", int(port)), timeout=timeout_s) as sock:
            try:
                with context.wrap_socket(sock, server_hostname=host or "localhost"):
                    speaks_tls = True
            except (ssl.SSLError, OSError):
                speaks_tls = False
    except (OSError, ValueError):
        return None  # nothing listens: the usual "is it running?" message applies
    if speaks_tls and not security.uses_tls:
        return (
            f"TLS required: {bootstrap_servers} speaks TLS but this client uses {security.protocol}; "
            f"set KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SSL) and KAFKA_SSL_CA_LOCATION"
        )
    if not speaks_tls and security.uses_tls:
        return (
            f"TLS failed: {bootstrap_servers} does not speak TLS but this client uses {security.protocol}; "
            f"check KAFKA_SECURITY_PROTOCOL and the port"
        )
    return None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


# ------------------------------------------------------------------ the job's own writes

KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1048588  # the broker's message.max.bytes, a topic's default max.message.bytes
# Failed writes a new attempt can succeed at, besides kafka-python's RetriableError classes: a
# broker restarting, an idempotent producer's sequence lost with a batch that failed, and a
# record whose producer was closed under it (sinks.KafkaPublisher replaces a failed producer).
_WRITE_RETRIABLE = ("BrokerNotAvailableError", "OutOfOrderSequenceNumberError", "UnknownProducerIdError", "IllegalStateError")


def describe_error(error: BaseException) -> str:
    """`Class: detail` of a client error, on one line (kafka-python's own text repeats the
    class and ends in `None` when the broker said no more)."""
    detail = str(error.args[0]).strip().splitlines()[0][:200] if error.args and error.args[0] not in (None, "") else ""
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__


def is_retriable_write_error(error: BaseException) -> bool:
    """A produce error (kafka-python) that the same write, tried again later, can get past:
    too few in-sync replicas, a leader moving or not there yet, the broker away, a timeout."""
    from kafka.errors import RetriableError

    return isinstance(error, RetriableError) or type(error).__name__ in _WRITE_RETRIABLE


def batch_bytes(key: bytes | None, value: bytes | None) -> int:
    """The size of a record as a broker compares it with a topic's max.message.bytes: in a
    record batch of its own (uncompressed, no headers)."""
    from kafka.record.default_records import DefaultRecordBatchBuilder
    from kafka.record.util import size_of_varint

    body = 3 + DefaultRecordBatchBuilder.size_of(key, value, [])  # attributes, timestamp and offset deltas (0)
    return DefaultRecordBatchBuilder.HEADER_STRUCT.size + size_of_varint(body) + body


def admin_client(bootstrap_servers: str, security: KafkaSecurity | None = None, timeout_s: float | None = None):
    """A kafka-python admin client of `bootstrap_servers` (comma-separated) with the client
    security settings, the one way the project opens one; `timeout_s` bounds its bootstrap
    and each request (None: kafka-python's defaults). The caller closes it."""
    from kafka import KafkaAdminClient

    timeouts = {"bootstrap_timeout_ms": int(timeout_s * 1000), "request_timeout_ms": int(timeout_s * 1000)} if timeout_s else {}
    return KafkaAdminClient(
        bootstrap_servers=bootstrap_servers.split(","), **timeouts, **(security or KafkaSecurity()).kafka_python_kwargs()
    )


def topic_config(bootstrap_servers: str, topic: str, name: str, security: KafkaSecurity | None = None) -> str | None:
    """A topic's setting as the broker applies it (its own, else the broker's default), or
    None when the broker cannot tell."""
    from kafka.admin import ConfigResource, ConfigResourceType

    try:
        admin = admin_client(bootstrap_servers, security, 5.0)
    except Exception:  # the line is written without it
        return None
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, [name])])
        return str(described["topic"][topic][name]["value"])
    except Exception:
        return None
    finally:
        admin.close()


def explain_write_failure(
    error: BaseException,
    topic: str,
    what: str,
    bootstrap_servers: str,
    security: KafkaSecurity,
    record_bytes: int | None = None,
    option: str | None = None,
) -> str:
    """The one line for a write to `topic` (`what`: "results topic", "metrics topic") that
    a new attempt cannot get past: the topic, the cause and the fix. `record_bytes`: the
    refused record as the broker counts it (`batch_bytes`); `option`: the job's option that
    names the topic."""
    from kafka.errors import AuthorizationError, InvalidTopicError, MessageSizeTooLargeError, RecordListTooLargeError

    name = type(error).__name__
    elsewhere = f"or set {option} to a topic that takes it" if option else "or write to another topic"
    if isinstance(error, MessageSizeTooLargeError) and "max_request_size" in str(error):  # refused by the producer itself
        return f"a record of {record_bytes} bytes for {what} '{topic}' is larger than the job's producer sends (max_request_size)"
    if isinstance(error, (MessageSizeTooLargeError, RecordListTooLargeError)):
        size = f"a record of {record_bytes} bytes" if record_bytes is not None else "a record"
        limit = topic_config(bootstrap_servers, topic, "max.message.bytes", security)
        needed = max(KAFKA_DEFAULT_MAX_MESSAGE_BYTES, (record_bytes or 0) + 1024)
        return (
            f"{what} '{topic}' refused {size}: larger than the topic's max.message.bytes ({limit or 'unknown'}); raise it with "
            f"kafka-configs.sh --bootstrap-server {bootstrap_servers} --alter --entity-type topics --entity-name {topic} "
            f"--add-config max.message.bytes={needed}, {elsewhere}"
        )
    if isinstance(error, AuthorizationError):
        if security.uses_sasl:
            user = security.sasl_username
            grant = (
                f"grant WRITE and DESCRIBE on it to User:{user} (kafka-acls.sh --bootstrap-server {bootstrap_servers} --add "
                f"--allow-principal User:{user} --operation WRITE --operation DESCRIBE --topic {topic}; docs/cluster.md)"
            )
            who = f"the job's user '{user}'"
        else:
            grant, who = "grant WRITE and DESCRIBE on it to the job's principal (docs/cluster.md)", "the job's user"
        return f"{who} may not write to {what} '{topic}' at {bootstrap_servers} ({name}): {grant}"
    if isinstance(error, InvalidTopicError):
        fix = f"name another with {option}" if option else "name another"
        return f"{what} name '{topic}' is refused by the broker at {bootstrap_servers} ({name}); {fix}"
    return f"{what} '{topic}' refused a write ({describe_error(error)}) at {bootstrap_servers}; not a failure a restart heals"
