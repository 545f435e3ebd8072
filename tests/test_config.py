"""Settings from flashbulb.toml, and USD amounts parsed into exact integer micro-USD."""

from __future__ import annotations

import pytest

from flashbulb.config import Settings, micros_to_usd, usd_to_micros
from flashbulb.engine.registry import Registry


@pytest.mark.parametrize("usd, micros", [("0.039", 39_000), (5, 5_000_000), ("0.000001", 1), ("-2.5", -2_500_000), (0.1, 100_000)])
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
    assert Registry.default(settings).resolve("models/flashbulb-photo").price_micros_per_image == 12_500


def test_unknown_limit_is_refused(tmp_path):
    (tmp_path / "flashbulb.toml").write_text("[limits]\nmax_qeue = 3\n")
    with pytest.raises(ValueError, match="max_qeue"):
        Settings.load(tmp_path)
