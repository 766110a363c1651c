"""The client security settings without a broker: each library's option names, the masked
password, and one clear line for settings that cannot work."""

from __future__ import annotations

import pickle

import pytest

from purchase_analytics.kafka_client import KafkaSecurity, Secret, SecurityConfigError


def test_the_password_never_prints_and_each_client_gets_its_own_option_names(tmp_path):
    password = tmp_path / "pw"
    password.write_text('s3cr"et\\\n')
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    security = KafkaSecurity.from_settings(
        {
            "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "KAFKA_SASL_USERNAME": "job",
            "KAFKA_SASL_PASSWORD_FILE": str(password),
            "KAFKA_SSL_CA_LOCATION": str(ca),
        }
    )
    assert "s3cr" not in repr(security) and "s3cr" not in str(security.sasl_password) and "s3cr" not in f"{security.sasl_password!r}"
    assert security.describe() == "SASL_SSL as 'job' (SCRAM-SHA-512)"
    assert security.kafka_python_kwargs()["sasl_plain_password"] == 's3cr"et\\'
    assert security.confluent_config()["sasl.password"] == 's3cr"et\\'
    spark = security.spark_options()
    assert spark["kafka.ssl.truststore.type"] == "PEM" and spark["kafka.ssl.truststore.location"] == str(ca)
    assert spark["kafka.sasl.jaas.config"].endswith('username="job" password="s3cr\\"et\\\\";')
    with pytest.raises(TypeError):
        pickle.dumps(Secret("x"))


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs KAFKA_SASL_USERNAME"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "job"}, "needs KAFKA_SASL_PASSWORD_FILE"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "job", "KAFKA_SASL_PASSWORD_FILE": "/nonexistent"},
            "KAFKA_SASL_PASSWORD_FILE=/nonexistent",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERT_LOCATION": "/etc/hostname"},
            "needs both KAFKA_SSL_CERT_LOCATION and KAFKA_SSL_KEY_LOCATION",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_LOCATION": "/nonexistent.pem"},
            "KAFKA_SSL_CA_LOCATION=/nonexistent.pem does not exist",
        ),
    ],
)
def test_settings_that_cannot_work_are_one_clear_line(settings, message):
    with pytest.raises(SecurityConfigError, match=message.replace("(", "\\(")):
        KafkaSecurity.from_settings(settings)


def test_plaintext_gives_every_client_just_the_protocol():
    security = KafkaSecurity.from_settings({})
    assert security.kafka_python_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert security.confluent_config() == {"security.protocol": "PLAINTEXT"}
    assert security.spark_options() == {"kafka.security.protocol": "PLAINTEXT"}
