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
