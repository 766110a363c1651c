"""runtime/kafka_security.py without a broker: the local CA and certificates (real openssl),
the users' password files, each role's client settings and ACLs. The secured broker itself,
with these users and ACLs, is tested in test_secured.py."""

from __future__ import annotations

import stat
import subprocess

from purchase_analytics.runtime import kafka_security


def openssl_text(cert) -> str:
    return subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-text"], capture_output=True, text=True, check=True).stdout


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_tls_material_is_made_once_signed_by_the_local_ca_and_private(tmp_path):
    tls = kafka_security.ensure_tls_material(tmp_path / "tls")
    for name, cn in (("broker", kafka_security.BROKER_PRINCIPAL), ("admin", kafka_security.ADMIN_PRINCIPAL)):
        verified = subprocess.run(["openssl", "verify", "-CAfile", str(tls / "ca.pem"), str(tls / f"{name}.pem")], capture_output=True)
        assert verified.returncode == 0, verified.stderr
        text = openssl_text(tls / f"{name}.pem")
        assert f"Subject: CN = {cn}" in text and "DNS:localhost" in text and "IP Address:127.0.0.1" in text
        keystore = (tls / f"{name}.keystore.pem").read_text()
        assert keystore == (tls / f"{name}.key").read_text() + (tls / f"{name}.pem").read_text()  # key, then certificate
        assert mode(tls / f"{name}.key") == mode(tls / f"{name}.keystore.pem") == 0o600
    assert mode(tls) == 0o700 and mode(tls / "ca.key") == 0o600
    assert "CA:TRUE" in openssl_text(tls / "ca.pem")
    assert not list(tls.glob("*.csr")) and not list(tls.glob("*.ext"))  # no leftovers

    before = {p.name: p.read_bytes() for p in tls.iterdir() if p.is_file()}
    kafka_security.ensure_tls_material(tls)  # a later call reuses everything
    assert {p.name: p.read_bytes() for p in tls.iterdir() if p.is_file()} == before


def test_passwords_are_drawn_once_per_user_and_only_the_owner_reads_them(tmp_path):
    files = kafka_security.ensure_passwords(tmp_path)
    assert sorted(files) == sorted(kafka_security.ROLES)
    passwords = {user: path.read_text() for user, path in files.items()}
    assert len(set(passwords.values())) == len(kafka_security.ROLES) and all(len(p.strip()) >= 24 for p in passwords.values())
    assert all(mode(path) == 0o600 for path in files.values()) and mode(tmp_path / "users") == 0o700
    assert {user: path.read_text() for user, path in kafka_security.ensure_passwords(tmp_path).items()} == passwords  # kept


def test_each_role_gets_scram_over_tls_and_its_settings_name_the_password_file_only(tmp_path):
    files = kafka_security.ensure_passwords(tmp_path)
    security = kafka_security.client_security(tmp_path, "job")
    assert (security.protocol, security.sasl_mechanism, security.sasl_username) == ("SASL_SSL", "SCRAM-SHA-512", "job")
    assert security.kafka_python_kwargs()["sasl_plain_password"] == files["job"].read_text().strip()
    assert security.ssl_ca_location == str(tmp_path / "ca.pem")
    admin = kafka_security.admin_security(tmp_path)
    assert admin.protocol == "SSL" and admin.ssl_cert_location == str(tmp_path / "admin.pem")

    env_files = kafka_security.write_role_env_files(tmp_path, "localhost:9092")
    for role, path in env_files.items():
        text = path.read_text()
        assert f"KAFKA_SASL_USERNAME={role}\n" in text and f"KAFKA_SASL_PASSWORD_FILE={files[role]}\n" in text
        assert files[role].read_text().strip() not in text  # the password itself is never written there


def test_acls_give_each_role_only_what_it_does():
    acls = kafka_security.role_acls("purchases", ["dlq", "results"])
    producer = {(name, op) for _, name, _, op in acls["producer"]}
    assert producer == {("purchases", "WRITE"), ("purchases", "DESCRIBE")}
    job = {(rtype, name, pattern, op) for rtype, name, pattern, op in acls["job"]}
    assert ("TOPIC", "purchases", "LITERAL", "READ") in job and ("TOPIC", "purchases", "LITERAL", "WRITE") not in job
    assert {("TOPIC", t, "LITERAL", "WRITE") for t in ("dlq", "results")} <= job
    assert ("GROUP", kafka_security.SPARK_GROUP_PREFIX, "PREFIXED", "READ") in job  # Spark's generated group names
    assert not any(op in ("WRITE", "CREATE", "DELETE", "ALTER") for *_, op in acls["ui"])  # read-only


def test_broker_properties_require_tls_everywhere_and_deny_by_default(tmp_path):
    lines = kafka_security.broker_properties(tmp_path)
    props = dict(line.split("=", 1) for line in lines)
    assert props["ssl.client.auth"] == "required" and props["listener.name.client.ssl.client.auth"] == "none"
    assert props["allow.everyone.if.no.acl.found"] == "false" and props["auto.create.topics.enable"] == "false"
    assert props["super.users"] == f"User:{kafka_security.BROKER_PRINCIPAL};User:{kafka_security.ADMIN_PRINCIPAL}"
    assert props["ssl.keystore.location"] == str(tmp_path / "broker.keystore.pem")
