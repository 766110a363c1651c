"""A secured local broker's material: a local CA and certificates (openssl), SCRAM users
and ACLs (through the admin API, over the broker's mutual-TLS admin listener).

Layout of `tls_dir` (under the broker's data folder, git-ignored, keys mode 0600):
    ca.pem ca.key                 the local certificate authority
    broker.pem broker.key         the brokers' certificate (CN=kafka-broker, SAN localhost)
    broker.keystore.pem           key + certificate, the broker's PEM keystore
    admin.pem admin.key           CN=kafka-admin, super user, for topics, users and ACLs
    users/<name>.password         each SCRAM user's password
    <role>.env                    client settings per role (producer, job, ui), for `make`
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

from ..kafka_client import KafkaSecurity, Secret, admin_client

SCRAM_MECHANISM = "SCRAM-SHA-512"
BROKER_PRINCIPAL = "kafka-broker"
ADMIN_PRINCIPAL = "kafka-admin"
ROLES = ("producer", "job", "ui")
SPARK_GROUP_PREFIX = "spark-kafka-source-"  # Spark's Kafka source names its consumer groups so


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {(proc.stderr or proc.stdout).strip()[-300:]}")


# A new P-256 key, unencrypted on disk (the files are 0600 in a 0700 folder).
_NEW_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _issue(tls_dir: Path, name: str, common_name: str) -> None:
    _openssl(
        "req",
        *_NEW_EC_KEY,
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        f"/CN={common_name}",
        cwd=tls_dir,
    )
    ext = tls_dir / f"{name}.ext"
    ext.write_text(
        "subjectAltName=DNS:localhost,DNS:kafka,DNS:kafka-2,DNS:kafka-3,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
        "basicConstraints=CA:FALSE\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        f"{name}.pem",
        "-days",
        "825",
        "-extfile",
        ext.name,
        cwd=tls_dir,
    )
    (tls_dir / f"{name}.csr").unlink()
    ext.unlink()
    (tls_dir / f"{name}.key").chmod(0o600)


def ensure_tls_material(tls_dir: Path) -> Path:
    """Create the CA and the broker and admin certificates once; later calls reuse them."""
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not (tls_dir / "ca.pem").exists():
        _openssl(
            "req",
            "-x509",
            *_NEW_EC_KEY,
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "825",
            "-subj",
            "/CN=purchase-analytics local CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            cwd=tls_dir,
        )
        (tls_dir / "ca.key").chmod(0o600)
    for name, cn in (("broker", BROKER_PRINCIPAL), ("admin", ADMIN_PRINCIPAL)):
        if not (tls_dir / f"{name}.pem").exists():
            _issue(tls_dir, name, cn)
    for name in ("broker", "admin"):  # the Java clients' PEM keystore: key, then certificate
        keystore = tls_dir / f"{name}.keystore.pem"
        if not keystore.exists():
            keystore.touch(mode=0o600)
            keystore.write_text((tls_dir / f"{name}.key").read_text() + (tls_dir / f"{name}.pem").read_text())
    return tls_dir


def ensure_passwords(tls_dir: Path, users: tuple[str, ...] = ROLES) -> dict[str, Path]:
    """Each user's password, drawn once, in users/<name>.password (0600)."""
    (tls_dir / "users").mkdir(exist_ok=True, mode=0o700)
    for user in users:
        path = user_password(tls_dir, user)
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(24) + "\n")
    return {user: user_password(tls_dir, user) for user in users}


def prepare_docker(tls_dir: Path, host_bootstrap: str) -> None:
    """The compose variant's mount: certificates, passwords, the admin tools' client
    properties and per-role settings for host clients. The containers run as other users,
    so the files are world-readable; the folder above (0700) keeps other host users out."""
    tls_dir.parent.mkdir(parents=True, exist_ok=True)
    tls_dir.parent.chmod(0o700)
    ensure_tls_material(tls_dir)
    ensure_passwords(tls_dir)
    (tls_dir / "admin.properties").write_text(
        "security.protocol=SSL\nssl.keystore.type=PEM\nssl.keystore.location=/etc/kafka/secrets/admin.keystore.pem\n"
        "ssl.truststore.type=PEM\nssl.truststore.location=/etc/kafka/secrets/ca.pem\n"
    )
    write_role_env_files(tls_dir, host_bootstrap)
    for path in [tls_dir, tls_dir / "users"]:
        path.chmod(0o755)
    for path in tls_dir.rglob("*"):
        if path.is_file() and path.name != "ca.key":  # the CA's key stays on the host, 0600
            path.chmod(0o644)


def broker_properties(tls_dir: Path) -> list[str]:
    """TLS everywhere; clients log in with SCRAM on CLIENT, brokers and the admin tool
    with certificates on INTERNAL and CONTROLLER; StandardAuthorizer, deny by default."""
    return [
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={tls_dir / 'broker.keystore.pem'}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={tls_dir / 'ca.pem'}",
        "ssl.client.auth=required",
        "listener.name.client.ssl.client.auth=none",
        f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
        f"listener.name.client.{SCRAM_MECHANISM.lower()}.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "ssl.principal.mapping.rules=RULE:^CN=([^,]+)$/$1/,DEFAULT",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users=User:{BROKER_PRINCIPAL};User:{ADMIN_PRINCIPAL}",
        "allow.everyone.if.no.acl.found=false",
        "auto.create.topics.enable=false",
    ]


def admin_security(tls_dir: Path) -> KafkaSecurity:
    """The super user: mutual TLS with the admin certificate, on the INTERNAL listener."""
    return KafkaSecurity(
        protocol="SSL",
        ssl_ca_location=str(tls_dir / "ca.pem"),
        ssl_cert_location=str(tls_dir / "admin.pem"),
        ssl_key_location=str(tls_dir / "admin.key"),
    )


def user_password(tls_dir: Path, user: str) -> Path:
    return tls_dir / "users" / f"{user}.password"


def client_security(tls_dir: Path, user: str) -> KafkaSecurity:
    return KafkaSecurity(
        protocol="SASL_SSL",
        sasl_mechanism=SCRAM_MECHANISM,
        sasl_username=user,
        sasl_password=Secret(user_password(tls_dir, user).read_text().strip()),
        ssl_ca_location=str(tls_dir / "ca.pem"),
    )


def create_users(admin_bootstrap: str, tls_dir: Path, users: tuple[str, ...] = ROLES) -> None:
    """SCRAM credentials through the admin API (no password on any command line); each
    password is drawn once and kept in users/<name>.password (0600)."""
    from kafka.admin import UserScramCredentialUpsertion

    upserts = [
        UserScramCredentialUpsertion(user, SCRAM_MECHANISM, path.read_text().strip())
        for user, path in ensure_passwords(tls_dir, users).items()
    ]
    admin = admin_client(admin_bootstrap, admin_security(tls_dir))
    try:
        errors = {u: e for u, e in admin.alter_user_scram_credentials(upserts).items() if e}
    finally:
        admin.close()
    if errors:
        raise RuntimeError(f"creating SCRAM users failed: {errors}")


def role_acls(topic: str, write_topics: list[str]) -> dict[str, list[tuple]]:
    """(resource type, name, pattern, operation) allowed per role. The producer writes the
    purchase topic; the job reads it, writes the dead-letter, results and metrics topics and
    uses Spark's generated consumer groups; the UI and dashboard only read and describe."""
    acls: dict[str, list[tuple]] = {
        "producer": [("TOPIC", topic, "LITERAL", op) for op in ("WRITE", "DESCRIBE")],
        "job": [("TOPIC", topic, "LITERAL", op) for op in ("READ", "DESCRIBE")]
        + [("TOPIC", t, "LITERAL", op) for t in write_topics for op in ("WRITE", "DESCRIBE")]
        + [("GROUP", SPARK_GROUP_PREFIX, "PREFIXED", "READ")],
        "ui": [("TOPIC", "*", "LITERAL", op) for op in ("READ", "DESCRIBE", "DESCRIBE_CONFIGS")]
        + [("GROUP", "*", "LITERAL", op) for op in ("READ", "DESCRIBE")]
        + [("CLUSTER", "kafka-cluster", "LITERAL", op) for op in ("DESCRIBE", "DESCRIBE_CONFIGS")],
    }
    return acls


def create_acls(admin_bootstrap: str, tls_dir: Path, topic: str, write_topics: list[str]) -> int:
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern, ResourceType

    acls = [
        ACL(
            f"User:{user}",
            "*",
            ACLOperation[op],
            ACLPermissionType.ALLOW,
            ResourcePattern(ResourceType[rtype], name, ACLResourcePatternType[pattern]),
        )
        for user, rules in role_acls(topic, write_topics).items()
        for rtype, name, pattern, op in rules
    ]
    admin = admin_client(admin_bootstrap, admin_security(tls_dir))
    try:
        result = admin.create_acls(acls)
    finally:
        admin.close()
    if result["failed"]:
        raise RuntimeError(f"creating ACLs failed: {result['failed'][:3]}")
    return len(acls)


def write_role_env_files(tls_dir: Path, bootstrap_servers: str) -> dict[str, Path]:
    """One file per role with the client settings (the password by file, never inline)."""
    files = {}
    for role in ROLES:
        path = tls_dir / f"{role}.env"
        path.write_text(
            f"KAFKA_BOOTSTRAP_SERVERS={bootstrap_servers}\nKAFKA_SECURITY_PROTOCOL=SASL_SSL\n"
            f"KAFKA_SASL_MECHANISM={SCRAM_MECHANISM}\nKAFKA_SASL_USERNAME={role}\n"
            f"KAFKA_SASL_PASSWORD_FILE={user_password(tls_dir, role)}\nKAFKA_SSL_CA_LOCATION={tls_dir / 'ca.pem'}\n"
        )
        files[role] = path
    return files
