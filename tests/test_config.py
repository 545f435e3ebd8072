"""Settings from flashbulb.toml, and USD amounts parsed into exact integer micro-USD."""

from __future__ import annotations

import re
import subprocess
import tomllib

import pytest
from conftest import FLASHBULB

from flashbulb.billing.money import micros_to_usd, usd_to_micros
from flashbulb.billing.prices import PriceBook
from flashbulb.config import Settings
from flashbulb.engine.registry import Registry


@pytest.mark.parametrize(
    "usd, micros", [("0.039", 39_000), (5, 5_000_000), ("0.000001", 1), ("-2.5", -2_500_000), (0.1, 100_000)]
)
def test_usd_to_micros_is_exact(usd, micros):
    assert usd_to_micros(usd) == micros
    assert usd_to_micros(micros_to_usd(micros)) == micros


@pytest.mark.parametrize("usd", ["0.0000001", "abc", "1e-9"])
def test_usd_that_is_not_a_whole_number_of_micros_is_refused(usd):
    with pytest.raises(ValueError):
        usd_to_micros(usd)


def test_prices_and_limits_come_from_flashbulb_toml(tmp_path):
    (tmp_path / "flashbulb.toml").write_text('[prices]\n"flashbulb-photo" = "0.0125"\n[limits]\nmax_queue_per_model = 3\n')
    settings = Settings.load(tmp_path)
    assert settings.max_queue_per_model == 3
    assert settings.database_url == f"sqlite:///{tmp_path / 'flashbulb.db'}"
    assert PriceBook(settings.prices, Registry.default(settings).priced_as()).schedule("flashbulb-photo").standard == 12_500


def test_unknown_limit_is_refused(tmp_path):
    (tmp_path / "flashbulb.toml").write_text("[limits]\nmax_qeue = 3\n")
    with pytest.raises(ValueError, match="max_qeue"):
        Settings.load(tmp_path)


def test_models_tables_split_deployment_keys_from_the_model_and_check_them():
    from flashbulb.config import Settings

    settings = Settings()
    settings.apply_toml(
        {
            "cluster": {"engine": "ray"},
            "models": {
                "flashbulb-photo": {"replicas": 2, "cpus_per_replica": 0.5},
                "mine": {"like": "sd-turbo", "path": "/weights", "min_replicas": 1, "max_replicas": 4},
            },
        }
    )
    assert settings.cluster_engine == "ray"
    assert settings.deployments == {
        "flashbulb-photo": {"replicas": 2, "cpus_per_replica": 0.5},
        "mine": {"min_replicas": 1, "max_replicas": 4},
    }
    assert "flashbulb-photo" not in settings.local_models and settings.local_models["mine"] == {
        "like": "sd-turbo",
        "path": "/weights",
    }
    for bad in (
        {"replicas": 0},
        {"replicas": 1.5},
        {"gpus_per_replica": True},
        {"cpus_per_replica": -1},
        {"replicas": 2, "max_replicas": 3},
        {"min_replicas": 3, "max_replicas": 2},
    ):
        with pytest.raises(ValueError):
            Settings().apply_toml({"models": {"flashbulb-photo": bad}})
    with pytest.raises(ValueError):
        Settings().apply_toml({"cluster": {"engine": "kubernetes"}})


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ('[limits]\ndatabase_url = "sqlite:///x"\n', "unknown setting [limits].database_url"),
        ('[diffusion]\ncompile = "no"\n', "must be true or false"),
        ("[diffusion]\nrate_limits = 5\n", "unknown setting [diffusion].rate_limits"),
        ("[limits]\nmax_body_bytes = -1\n", "whole number >= 0"),
        ('[limits]\nrequest_timeout_s = "soon"\n', "number >= 0"),
        ('[diffusion]\nwarm_models = "flashbulb-photo"\n', "list of names"),
        ('warm_models = ["flashbulb-photo"]\n', "unknown section or setting warm_models"),
        ('[provenance]\nwatermark = "off"\n', "[provenance].watermark must be true or false"),
        ("[provenance]\nsign = true\n", "unknown setting [provenance].sign"),
        ('[provenance]\nsigning_cert = "chain.pem"\n', "signing_cert and signing_key go together"),
        ("[batch]\nlease_s = 0.5\n", "[batch].lease_s must be at least 1 second"),
        ('[batch]\nmax_in_flight = "4"\n', "[batch].max_in_flight must be a whole number"),
        ("[batch]\nspeed = 1\n", "unknown setting [batch].speed; it takes discount_percent"),
        (
            '[models.mine]\nbackend = "m:f"\nprice_usd = "0.01"\nprice_micros_per_image = 1\n',
            "price_usd or price_micros_per_image",
        ),
    ],
)
def test_a_setting_of_the_wrong_name_or_type_is_refused_by_name(toml, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        Settings().apply_toml(tomllib.loads(toml))


def test_a_malformed_config_file_is_a_clear_error_not_a_traceback(tmp_path):
    (tmp_path / "flashbulb.toml").write_text("[limits\nmax_body_bytes = 1\n")
    ran = subprocess.run([*FLASHBULB, "--data-dir", str(tmp_path), "models"], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 2 and "not valid TOML" in ran.stderr and "Traceback" not in ran.stderr
