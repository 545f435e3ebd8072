"""Settings: embedded defaults, overridden by environment variables, CLI flags and flashbulb.toml."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path

from flashbulb.billing.prices import PriceSchedule
from flashbulb.billing.prices import parse as parse_prices
from flashbulb.vision.safety import EXPLICIT as EXPLICIT_NUDITY


def default_data_dir() -> Path:
    return Path(os.environ.get("FLASHBULB_DATA_DIR") or Path.home() / ".flashbulb")


CLUSTER_ENGINES = ("local", "ray", "inline")
# [models.NAME] keys that say how a model is deployed (the others describe the model itself).
DEPLOYMENT_KEYS = ("replicas", "min_replicas", "max_replicas", "gpus_per_replica", "cpus_per_replica")

RATE_LIMIT_NAMES = ("key_rpm", "account_rpm", "key_concurrent", "account_concurrent")


@dataclasses.dataclass
class RateLimits:
    """flashbulb.toml [rate_limits]: live calls per minute and calls in flight, per key and per
    account (0 = unlimited); [rate_limits.accounts.NAME] overrides any of the four for one account.
    With `redis_url` every server using that Redis shares the counts (else each process counts its own)."""

    key_rpm: int = 60
    account_rpm: int = 300
    key_concurrent: int = 4
    account_concurrent: int = 16
    redis_url: str = ""
    redis_prefix: str = "flashbulb"  # Redis keys start with this (several deployments on one Redis)
    accounts: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)

    def for_account(self, account_name: str) -> dict[str, int]:
        """The four limits that apply to one account."""
        return {**{name: getattr(self, name) for name in RATE_LIMIT_NAMES}, **self.accounts.get(account_name, {})}

    def apply_toml(self, section: dict) -> None:
        def limit(where: str, name: str, value: object) -> int:
            if name not in RATE_LIMIT_NAMES:
                raise ValueError(f"flashbulb.toml: unknown setting [{where}].{name}")
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"flashbulb.toml: [{where}].{name} must be a whole number >= 0 (0 = unlimited)")
            return value

        for name, value in section.items():
            if name == "accounts":
                if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
                    raise ValueError("flashbulb.toml: [rate_limits.accounts.NAME] must be tables")
                for account, limits in value.items():
                    where = f"rate_limits.accounts.{account}"
                    self.accounts[account] = {n: limit(where, n, v) for n, v in limits.items()}
            elif name in ("redis_url", "redis_prefix"):
                if not isinstance(value, str):
                    raise ValueError(f"flashbulb.toml: [rate_limits].{name} must be a string")
                setattr(self, name, value)
            else:
                setattr(self, name, limit("rate_limits", name, value))


SECTIONS = {
    "prices",
    "referrals",
    "limits",
    "diffusion",
    "batch",
    "rate_limits",
    "storage",
    "cluster",
    "models",
    "safety",
    "provenance",
}
# What [limits] and [diffusion] may set: each a field of Settings, checked against its type.
LIMIT_KEYS = (
    "max_body_bytes",
    "head_timeout_s",
    "body_timeout_s",
    "body_min_bytes_per_s",
    "max_connections",
    "max_input_pixels",
    "max_input_images",
    "max_pixels_in_flight",
    "max_queue_per_model",
    "request_timeout_s",
    "hold_ttl_s",
    "hold_sweep_interval_s",
    "output_url_ttl_s",
    "idempotency_ttl_s",
    "max_file_bytes",
    "file_ttl_s",
    "max_account_file_bytes",
    "max_open_batches",
    "max_batch_items",
)
DIFFUSION_KEYS = (
    "model_dir",
    "device",
    "compile",
    "fp8",
    "step_cache",
    "batch_window_ms",
    "max_batch",
    "identity_retries",
    "cpu_max_weights_gb",
    "warm_models",
)


def _typed(where: str, value: object, current: object) -> object:
    """`value` as the type of the setting it replaces, or a ValueError naming it (a string is never
    a boolean: `compile = "no"` once became True)."""
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ValueError(f"flashbulb.toml: {where} must be true or false, not {value!r}")
        return value
    if isinstance(current, (int, float)):
        whole = isinstance(current, int)
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) or value < 0:
            raise ValueError(f"flashbulb.toml: {where} must be a {'whole ' if whole else ''}number >= 0, not {value!r}")
        return value if whole else float(value)
    if isinstance(current, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"flashbulb.toml: {where} must be a list of names, not {value!r}")
        return tuple(value)
    if not isinstance(value, str):
        raise ValueError(f"flashbulb.toml: {where} must be a string, not {value!r}")
    return Path(value).expanduser() if where.endswith("model_dir") else value


@dataclasses.dataclass
class Settings:
    data_dir: Path = dataclasses.field(default_factory=default_data_dir)
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    # Limits on what a caller can send.
    max_body_bytes: int = 32 * 1024 * 1024
    # How a caller must send it: a request head within head_timeout_s, a body within body_timeout_s plus
    # a second per body_min_bytes_per_s bytes; at most max_connections open at once (then 503).
    head_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    body_min_bytes_per_s: int = 64 * 1024
    max_connections: int = 1000
    max_input_pixels: int = 40_000_000
    max_input_images: int = 16
    # The decoded input pixels all calls in progress may hold at once (then 503, retry): 200 MP is
    # ~800 MB of RGBA, five requests at max_input_pixels or ~200 of a megapixel each.
    max_pixels_in_flight: int = 200_000_000
    # The engine: how many requests may wait per model before we answer 503.
    max_queue_per_model: int = 32
    request_timeout_s: float = 600.0
    # A hold outlives its request by this much; a crash leaves it to the sweeper.
    hold_ttl_s: float = 900.0
    hold_sweep_interval_s: float = 30.0
    # How long an image URL (OpenAI's response_format=url) works; the file is deleted after.
    output_url_ttl_s: float = 3600.0
    # How long a call sent with an Idempotency-Key keeps its answer for a retry to get back.
    idempotency_ttl_s: float = 24 * 3600.0
    # Files API: the largest upload, and how long a file is kept.
    max_file_bytes: int = 2 * 1024**3
    file_ttl_s: float = 48 * 3600.0
    # Per account: the bytes its files may hold together, the batches it may have unfinished, the
    # requests one batch may hold (what one account, even a $0 one, may take from everyone's disk and queue).
    max_account_file_bytes: int = 4 * 1024**3
    max_open_batches: int = 20
    max_batch_items: int = 10_000
    # Batch jobs (flashbulb.toml [batch] discount_percent, max_in_flight, max_attempts): a discount on the
    # per-image price; how many items run at once (few, so live traffic is never starved); how many
    # times an interrupted item is tried before it fails.
    batch_discount_percent: int = 50
    batch_max_in_flight: int = 4
    batch_max_attempts: int = 5
    # How long a batch item stays its server's without a heartbeat (every lease_s / 3): a killed
    # server's items run again on another within this.
    batch_lease_s: float = 30.0
    # Price overrides per model (flashbulb.toml [prices]): flashbulb.billing.prices.PriceSchedule by model name.
    prices: dict[str, PriceSchedule] = dataclasses.field(default_factory=dict)
    # Referrals (flashbulb.toml [referrals] percent, days): the share of a referred account's settled
    # spend credited to its referrer, for this many days after the referral (fixed at referral time).
    referral_percent: int = 10
    referral_days: int = 365
    # NudeNet classes that block an input or output (flashbulb.toml [safety] block = [...]).
    safety_block: tuple[str, ...] = EXPLICIT_NUDITY
    # Generative models (flashbulb.toml [diffusion]; local weights in [models.NAME]).
    model_dir: Path | None = None  # default: <data_dir>/models
    device: str = "auto"  # cuda when there is one, else cpu
    compile: bool = True  # GPU fast path: torch.compile per shape, fp8, optional step cache
    fp8: bool = True
    step_cache: float = 0.0
    batch_window_ms: float = 20.0  # how long a text-to-image job waits for others of its shape
    max_batch: int = 4
    identity_retries: int = 2  # new seeds for an edit that lost the face
    cpu_max_weights_gb: float = 8.0  # larger models refuse to load without a GPU
    warm_models: tuple[str, ...] = ("flashbulb-photo", "flashbulb-image")  # loaded at start when installed
    local_models: dict[str, dict] = dataclasses.field(default_factory=dict)
    # [models.NAME] backend = "module:factory": the operator's own backends (plugins, tests' faults).
    custom_backends: dict[str, dict] = dataclasses.field(default_factory=dict)
    # Where models run ([cluster] engine): "local", each replica in a supervised child process; or
    # "inline", in the API process (no isolation: the one-shot CLI and benchmarks' baseline).
    cluster_engine: str = "local"
    ray_address: str = ""  # [cluster] ray_address: "" starts Ray here; "auto" or "ray://head:10001" joins one
    # [storage] blobs: where uploads, batch result files and image URLs live: "folder" (the data
    # dir) or "database" (the shared database: several API servers on several hosts).
    blob_store: str = "folder"
    # [models.NAME] replicas (or min_replicas/max_replicas with Ray), gpus_per_replica, cpus_per_replica
    # (Ray's logical CPUs; under "local", the cores each worker's thread pools use: default, the
    # machine's cores shared among the replicas): how many copies of a model serve, and what each one gets.
    deployments: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    # [provenance]: C2PA content credentials on every image returned, an invisible watermark in its
    # pixels (each can be turned off per server), and the PEM certificate chain and key to sign with
    # (default: a self-signed pair made in <data_dir>/provenance on first start).
    content_credentials: bool = True
    watermark: bool = True
    signing_cert: Path | None = None
    signing_key: Path | None = None
    # Requests per minute and in flight, per key and per account (flashbulb.toml [rate_limits]).
    rate_limits: RateLimits = dataclasses.field(default_factory=RateLimits)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser()
        self.model_dir = Path(self.model_dir).expanduser() if self.model_dir else self.data_dir / "models"
        if not self.database_url:
            self.database_url = os.environ.get("FLASHBULB_DATABASE_URL") or f"sqlite:///{self.data_dir / 'flashbulb.db'}"

    @classmethod
    def load(cls, data_dir: str | Path | None = None, database_url: str | None = None) -> Settings:
        """Defaults < environment < flashbulb.toml in the data dir (CLI flags arrive as arguments)."""
        settings = cls(data_dir=Path(data_dir) if data_dir else default_data_dir(), database_url=database_url or "")
        config_file = settings.data_dir / "flashbulb.toml"
        if config_file.exists():
            try:
                doc = tomllib.loads(config_file.read_text())
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{config_file} is not valid TOML: {exc}") from None
            settings.apply_toml(doc)
        return settings

    def apply_toml(self, doc: dict) -> None:
        if not isinstance(doc.get("prices", {}), dict):
            raise ValueError("flashbulb.toml: [prices] must be a table of model = price")
        for model, value in doc.get("prices", {}).items():
            self.prices[model] = parse_prices(model, value)
        for name, value in doc.get("referrals", {}).items():
            if name not in ("percent", "days"):
                raise ValueError(f"flashbulb.toml: unknown setting [referrals].{name}; use percent, days")
            if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (name == "percent" and value > 100):
                raise ValueError(f"flashbulb.toml: [referrals].{name} must be a whole number (percent 0-100), not {value!r}")
            setattr(self, f"referral_{name}", value)
        if unknown := set(doc) - SECTIONS:
            raise ValueError(
                f"flashbulb.toml: unknown section or setting {', '.join(sorted(unknown))}; sections: {', '.join(sorted(SECTIONS))}"
            )
        for section, allowed in (("limits", LIMIT_KEYS), ("diffusion", DIFFUSION_KEYS)):
            if not isinstance(doc.get(section, {}), dict):
                raise ValueError(f"flashbulb.toml: [{section}] must be a table")
            for name, value in doc.get(section, {}).items():
                if name not in allowed:
                    raise ValueError(f"flashbulb.toml: unknown setting [{section}].{name}; it takes {', '.join(allowed)}")
                setattr(self, name, _typed(f"[{section}].{name}", value, getattr(self, name)))
        for name, value in doc.get("batch", {}).items():
            if name not in ("discount_percent", "max_in_flight", "max_attempts", "lease_s"):
                raise ValueError(
                    f"flashbulb.toml: unknown setting [batch].{name}; it takes discount_percent, max_in_flight, max_attempts, lease_s"
                )
            setattr(self, f"batch_{name}", _typed(f"[batch].{name}", value, getattr(self, f"batch_{name}")))
        if self.batch_lease_s < 1:
            raise ValueError("flashbulb.toml: [batch].lease_s must be at least 1 second")
        if not 0 <= self.batch_discount_percent <= 100:
            raise ValueError("flashbulb.toml: the batch discount must be between 0 and 100 percent")
        self.rate_limits.apply_toml(doc.get("rate_limits", {}))
        for name, value in doc.get("storage", {}).items():
            if name != "blobs" or value not in ("folder", "database"):
                raise ValueError('flashbulb.toml: [storage] takes blobs = "folder" or "database"')
            self.blob_store = value
        for name, value in doc.get("cluster", {}).items():
            if name == "engine" and value in CLUSTER_ENGINES:
                self.cluster_engine = value
            elif name == "ray_address" and isinstance(value, str):
                self.ray_address = value
            else:
                raise ValueError(f"flashbulb.toml: [cluster] takes engine = one of {', '.join(CLUSTER_ENGINES)} and ray_address")
        for name, fields in doc.get("models", {}).items():
            if not isinstance(fields, dict):
                raise ValueError(f"flashbulb.toml: [models.{name}] must be a table")
            fields = dict(fields)
            deployment = {k: fields.pop(k) for k in DEPLOYMENT_KEYS if k in fields}
            for k, v in deployment.items():
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                    raise ValueError(f"flashbulb.toml: [models.{name}].{k} must be a number > 0")
                if k != "cpus_per_replica" and (not isinstance(v, int) or v < 1):  # only CPUs come in fractions (Ray's)
                    raise ValueError(f"flashbulb.toml: [models.{name}].{k} must be a whole number >= 1")
            if "replicas" in deployment and deployment.keys() & {"min_replicas", "max_replicas"}:
                raise ValueError(
                    f"flashbulb.toml: [models.{name}]: give replicas (a fixed count) or min_replicas/max_replicas, not both"
                )
            if deployment.get("min_replicas", 1) > deployment.get("max_replicas", deployment.get("min_replicas", 1)):
                raise ValueError(f"flashbulb.toml: [models.{name}] min_replicas is more than max_replicas")
            if deployment:
                self.deployments[name] = deployment
            # A price in a model's own table ([prices] wins): the billing's, not the catalog's.
            if "price_usd" in fields and "price_micros_per_image" in fields:
                raise ValueError(f"flashbulb.toml: [models.{name}]: give price_usd or price_micros_per_image, not both")
            if "price_usd" in fields:
                try:
                    own = parse_prices(name, fields.pop("price_usd"))
                except ValueError as exc:
                    raise ValueError(str(exc).replace(f"[prices] {name!r}", f"[models.{name}].price_usd")) from None
                self.prices.setdefault(name, own)
            elif "price_micros_per_image" in fields:
                micros = fields.pop("price_micros_per_image")
                if isinstance(micros, bool) or not isinstance(micros, int) or micros < 0:
                    raise ValueError(f"flashbulb.toml: [models.{name}].price_micros_per_image must be a whole number >= 0")
                self.prices.setdefault(name, PriceSchedule.flat(micros))
            if "backend" in fields:
                self.custom_backends[name] = fields
            elif fields:  # a model of the catalog's kind with weights of the operator's (`like = ...`)
                self.local_models[name] = fields
        for name, value in doc.get("provenance", {}).items():
            if name in ("content_credentials", "watermark"):
                setattr(self, name, _typed(f"[provenance].{name}", value, True))
            elif name in ("signing_cert", "signing_key"):
                path = _typed(f"[provenance].{name}", value, "")
                assert isinstance(path, str)  # _typed keeps a string setting a string
                setattr(self, name, self.data_dir / Path(path).expanduser())
            else:
                raise ValueError(
                    f"flashbulb.toml: unknown setting [provenance].{name}; it takes content_credentials, "
                    "watermark, signing_cert, signing_key"
                )
        if (self.signing_cert is None) != (self.signing_key is None):
            raise ValueError("flashbulb.toml: [provenance] signing_cert and signing_key go together (a PEM chain and its key)")
        safety = doc.get("safety", {})
        if "block" in safety:
            if not isinstance(safety["block"], list) or not all(isinstance(c, str) for c in safety["block"]):
                raise ValueError("flashbulb.toml: [safety].block must be a list of NudeNet class names")
            self.safety_block = tuple(safety["block"])
