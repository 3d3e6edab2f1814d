"""`[message_broker] transport` and `[message_broker.kafka]` (docs/configuration.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hartonomous.config import ConfigError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hartonomous.toml"
    path.write_text(text)
    return path


def test_the_kafka_transport_and_event_hubs_settings_load(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        '[message_broker]\ntransport = "kafka"\n'
        "[message_broker.kafka]\n"
        'bootstrap_servers = "ns.servicebus.windows.net:9093, backup:9093"\n'
        'security_protocol = "SASL_SSL"\nsasl_mechanism = "PLAIN"\n'
        'sasl_username = "$ConnectionString"\nsasl_password = "Endpoint=sb://ns/;Key=k"\n',
    )
    broker = load_settings(config).message_broker
    assert broker.transport == "kafka"
    assert broker.kafka.bootstrap_servers == "ns.servicebus.windows.net:9093,backup:9093"
    assert broker.kafka.sasl_password.get_secret_value() == "Endpoint=sb://ns/;Key=k"
    assert "Key=k" not in repr(broker.kafka)  # a secret stays out of logs


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[message_broker]\ntransport = "rabbitmq"\n', "message_broker.transport"),
        (
            '[message_broker.kafka]\nbootstrap_servers = "broker-without-port"\n',
            "message_broker.kafka.bootstrap_servers",
        ),
        ('[message_broker.kafka]\nsecurity_protocol = "TLS"\n', "security_protocol"),
    ],
)
def test_bad_transport_settings_name_the_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(write(tmp_path, text))


@pytest.mark.parametrize(
    ("kafka", "named", "says"),
    [
        ('consumer_group = ""', "message_broker.kafka.consumer_group", "must not be empty"),
        ('consumer_group = "  "', "message_broker.kafka.consumer_group", "must not be empty"),
        ('topic = ""', "message_broker.kafka.topic", "is not a Kafka topic name"),
        ('topic = "bad topic/name"', "message_broker.kafka.topic", "is not a Kafka topic name"),
        (f'topic = "{"t" * 250}"', "message_broker.kafka.topic", "1 to 249"),
        ('topic = ".."', "message_broker.kafka.topic", "is not a Kafka topic name"),
        (
            'security_protocol = "SASL_SSL"',
            "message_broker.kafka",
            "sasl_mechanism must be set when security_protocol is 'SASL_SSL'",
        ),
        (
            'security_protocol = "SASL_PLAINTEXT"',
            "message_broker.kafka",
            "sasl_mechanism must be set when security_protocol is 'SASL_PLAINTEXT'",
        ),
        ('bootstrap_servers = "k:0"', "message_broker.kafka.bootstrap_servers", "1..65535"),
        ('bootstrap_servers = "k:9092,k:70000"', "message_broker.kafka.bootstrap_servers", "70000"),
        ('bootstrap_servers = ":9092"', "message_broker.kafka.bootstrap_servers", "host:port"),
    ],
)
def test_kafka_settings_that_would_crash_later_are_refused_at_load(
    tmp_path: Path, kafka: str, named: str, says: str
) -> None:
    """Each of these once validated and then failed inside librdkafka (an empty group aborts
    the process) or at the first connect; now one line at load names the key."""
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")) as refused:
        load_settings(write(tmp_path, f"[message_broker.kafka]\n{kafka}\n"))
    assert says in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_legal_topic_of_249_characters_and_sasl_with_a_mechanism_load(tmp_path: Path) -> None:
    kafka = load_settings(
        write(
            tmp_path,
            f'[message_broker.kafka]\ntopic = "{"a.b_c-D" * 35}{"x" * 4}"\n'
            'security_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "SCRAM-SHA-256"\n'
            'bootstrap_servers = "k:65535"\n',
        )
    ).message_broker.kafka
    assert len(kafka.topic) == 249
    assert kafka.sasl_mechanism == "SCRAM-SHA-256"


def test_ssl_ca_location_must_be_a_file_and_reaches_the_client(tmp_path: Path) -> None:
    from hartonomous.messaging.kafka import KafkaTransport

    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match=r"message_broker\.kafka\.ssl_ca_location") as refused:
        load_settings(write(tmp_path, f'[message_broker.kafka]\nssl_ca_location = "{missing}"\n'))
    assert "is not a file" in str(refused.value)
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = load_settings(
        write(
            tmp_path,
            f'[message_broker.kafka]\nsecurity_protocol = "SSL"\nssl_ca_location = "{ca}"\n',
        )
    )
    config = KafkaTransport(settings.message_broker)._client_config()
    assert (config["security.protocol"], config["ssl.ca.location"]) == ("SSL", str(ca))
