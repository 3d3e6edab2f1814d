"""Configuration: precedence, defaults of the reference digest, and errors that name the key."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from hartonomous.config import ConfigError, effective_settings, load_settings


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("HARTONOMOUS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hartonomous.toml"
    path.write_text(text)
    return path


def test_defaults_follow_the_reference_digest() -> None:
    settings = load_settings()
    assert settings.database.url == ""
    assert settings.message_broker.receive_wait_timeout_seconds == 2.0
    assert settings.message_broker.max_message_characters == 512_000
    assert settings.message_broker.conversation_lifetime_seconds == 300
    resilience = settings.message_broker.resilience
    assert (resilience.publish_max_attempts, resilience.poison_message_max_attempts) == (5, 3)
    assert resilience.circuit_breaker_break_duration_seconds == 30.0
    assert settings.billing.default_plan_code == "publisher_core"
    assert settings.billing.default_rate == Decimal("0.0105")
    assert settings.billing.operation_rates["neo4j_sync.inference_completed"] == Decimal("0.04")
    assert settings.billing.multipliers.grounding["private_vector_index"] == Decimal("1.55")
    assert settings.cdc.batch_size == 250
    assert settings.security.rate_limits == []


def test_file_overrides_defaults_and_env_overrides_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(
        tmp_path,
        '[server]\nport = 9000\nhost = "0.0.0.0"\n[cdc]\nbatch_size = 10\n',
    )
    monkeypatch.setenv("HARTONOMOUS_SERVER__PORT", "9100")
    settings = load_settings(config)
    assert settings.server.port == 9100  # environment beats file
    assert settings.server.host == "0.0.0.0"  # noqa: S104 - file beats default
    assert settings.cdc.batch_size == 10


def test_explicit_overrides_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARTONOMOUS_DATA_DIR", "/from/env")
    assert load_settings().data_dir == Path("/from/env")
    assert load_settings(overrides={"data_dir": Path("/from/cli")}).data_dir == Path("/from/cli")


def test_config_file_from_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other.toml"
    other.write_text("[server]\nport = 9200\n")
    monkeypatch.setenv("HARTONOMOUS_CONFIG", str(other))
    assert load_settings().server.port == 9200


def test_hartonomous_toml_in_working_directory_is_read(tmp_path: Path) -> None:
    write(tmp_path, "[server]\nport = 9300\n")
    assert load_settings().server.port == 9300


def test_money_from_toml_is_exact_decimal(tmp_path: Path) -> None:
    config = write(tmp_path, '[billing]\ndefault_rate = 0.0105\nunit_price_per_dcu = "0.00009"\n')
    settings = load_settings(config)
    assert settings.billing.default_rate == Decimal("0.0105")
    assert settings.billing.unit_price_per_dcu == Decimal("0.00009")


def test_money_with_too_many_places_is_refused(tmp_path: Path) -> None:
    config = write(tmp_path, '[billing]\ndefault_rate = "0.0000001"\n')
    with pytest.raises(ConfigError, match=r"billing\.default_rate"):
        load_settings(config)


def test_unknown_key_is_named_with_a_close_match(tmp_path: Path) -> None:
    config = write(tmp_path, '[database]\nulr = "postgresql://x"\n')
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    message = str(raised.value)
    assert "unknown configuration key 'database.ulr'" in message
    assert "did you mean 'database.url'" in message
    assert str(config) in message


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    config = write(tmp_path, "[neo4jj]\nuri = 'bolt://x'\n")
    with pytest.raises(ConfigError, match=r"unknown configuration key 'neo4jj'.*'neo4j'"):
        load_settings(config)


def test_malformed_toml_names_file_and_line(tmp_path: Path) -> None:
    config = write(tmp_path, "[server]\nport = 1\n[database\nurl = 'x'\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    assert str(config) in str(raised.value)
    assert "line 3" in str(raised.value)


def test_wrong_type_names_key_and_expected_type(tmp_path: Path) -> None:
    config = write(tmp_path, '[message_broker.resilience]\npublish_max_attempts = "many"\n')
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    message = str(raised.value)
    assert "message_broker.resilience.publish_max_attempts" in message
    assert "valid integer" in message
    assert "'many'" in message


def test_wrong_type_from_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARTONOMOUS_SERVER__PORT", "eighty")
    with pytest.raises(ConfigError, match=r"HARTONOMOUS_SERVER__PORT.*valid integer"):
        load_settings()


def test_unknown_environment_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARTONOMOUS_DATABSE__URL", "postgresql://x")
    with pytest.raises(ConfigError, match=r"HARTONOMOUS_DATABSE__URL.*HARTONOMOUS_DATABASE__URL"):
        load_settings()


def test_out_of_range_value_is_refused(tmp_path: Path) -> None:
    config = write(tmp_path, "[message_broker]\nreceive_wait_timeout_seconds = 0.1\n")
    with pytest.raises(ConfigError, match=r"receive_wait_timeout_seconds.*greater than or equal"):
        load_settings(config)


def test_dotted_service_names_are_refused(tmp_path: Path) -> None:
    # The seed's own default failed its broker's validation; ours is checked at load time.
    config = write(tmp_path, '[message_broker]\ninitiator_service_name = "Hartonomous.Broker"\n')
    with pytest.raises(ConfigError, match="initiator_service_name"):
        load_settings(config)


def test_max_delay_below_base_delay_is_refused(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "[message_broker.resilience]\npublish_base_delay_seconds = 5\n"
        "publish_max_delay_seconds = 1\n",
    )
    with pytest.raises(ConfigError, match="publish_max_delay_seconds"):
        load_settings(config)


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")


def test_rate_limit_rules_and_deny_list(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "[security]\nbanned_tenants = ['evil']\n"
        "[security.tenant_operation_deny_list]\nacme = ['neo4j_sync.model_updated']\n"
        "[[security.rate_limits]]\nname = 'per-tenant'\nscope = 'tenant'\npermit_limit = 5\n",
    )
    security = load_settings(config).security
    assert security.banned_tenants == ["evil"]
    assert security.tenant_operation_deny_list == {"acme": ["neo4j_sync.model_updated"]}
    assert security.rate_limits[0].permit_limit == 5
    assert security.rate_limits[0].window_seconds == 60.0


def test_bad_rate_limit_scope_is_named(tmp_path: Path) -> None:
    config = write(tmp_path, "[[security.rate_limits]]\nname = 'x'\nscope = 'planet'\n")
    with pytest.raises(ConfigError, match=r"security\.rate_limits\.0\.scope"):
        load_settings(config)


def test_show_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARTONOMOUS_DATABASE__URL", "postgresql://app:s3cret@db.example:5432/h")
    monkeypatch.setenv("HARTONOMOUS_NEO4J__PASSWORD", "graph-secret")
    shown = effective_settings(load_settings())
    rendered = repr(shown)
    assert "s3cret" not in rendered
    assert "graph-secret" not in rendered
    assert shown["database"]["url"] == "postgresql://app:***@db.example:5432/h"
    assert shown["neo4j"]["password"] == "***"


def test_a_section_check_names_the_environment_variables_that_set_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "hartonomous.toml"
    config.write_text("[server]\nport = 9000\n")
    monkeypatch.setenv("HARTONOMOUS_HEALTH__BACKUP_WARN_HOURS", "5")
    monkeypatch.setenv("HARTONOMOUS_HEALTH__BACKUP_FAIL_HOURS", "1")
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    message = str(raised.value)
    assert message.startswith(
        "invalid value for 'health' from environment variables "
        "HARTONOMOUS_HEALTH__BACKUP_FAIL_HOURS, HARTONOMOUS_HEALTH__BACKUP_WARN_HOURS: "
        "backup_fail_hours (1.0) must be at least"
    ), message
    assert str(config) not in message
