"""Node settings: environment variables (``DATANET_*``), an optional TOML file, defaults.

Defaults are the embedded ones (a local dev chain on 127.0.0.1:8545), so the demo and the tests
need no configuration at all. The state directory (`default_data_dir`): ``DATANET_DATA_DIR`` if
set, else ``.datanet/`` in the current directory if it exists (a checkout's, the demo's), else the
user's data directory (``$XDG_DATA_HOME/datanet``, by default ``~/.local/share/datanet``).
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from node.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_DATA_DIR = Path(".datanet")
"""The repo-local state directory (relative: the current directory's), used when it exists."""


def default_data_dir() -> Path:
    """Where state lives when DATANET_DATA_DIR is not set: `.datanet/` in the current directory if it
    exists (a checkout's, the demo's: they keep working where they are), else the user's data
    directory, so an operator's or contributor's wallets and state do not depend on the directory
    a command is run from: `$XDG_DATA_HOME/datanet`, by default `~/.local/share/datanet`."""
    if LOCAL_DATA_DIR.is_dir():
        return LOCAL_DATA_DIR
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "datanet"


class Settings(BaseSettings):
    """Everything an operator can set. Precedence: init args > env > TOML file > defaults."""

    model_config = SettingsConfigDict(
        env_prefix="DATANET_", toml_file="datanet.toml", extra="ignore", validate_default=True
    )

    network: str = Field("localhost", description="Name of the deployment file in deployments_dir.")
    rpc_url: str = Field("http://127.0.0.1:8545", description="JSON-RPC endpoint of the EVM chain.")
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the node keeps its state (default: ./.datanet if it exists, else $XDG_DATA_HOME/datanet).",
    )
    deployments_dir: Path = Field(Path("deployments"), description="Where deploy writes addresses.")
    artifacts_dir: Path = Field(
        REPO_ROOT / "artifacts", description="Hardhat artifacts (npx hardhat compile writes them)."
    )
    ipfs_api: str | None = Field(
        None, description="Kubo RPC API URL (e.g. http://127.0.0.1:5001); unset: the embedded store."
    )
    ipfs_timeout: float = Field(30.0, gt=0, description="Seconds before one IPFS API call times out.")
    keystore: Path | None = Field(None, description="Encrypted JSON keystore of the node's account.")
    keystore_password: SecretStr | None = Field(None, description="Password of that keystore.")
    private_key: SecretStr | None = Field(
        None, description="Hex private key (prefer a keystore; never logged)."
    )
    confirmations: int = Field(
        2, ge=0, description="Blocks an event must be buried under (default 2; 0 on the dev chain 31337)."
    )
    poll_interval: float = Field(1.0, gt=0, description="Seconds between watcher polls.")
    rpc_timeout: float = Field(10.0, gt=0, description="Seconds before one RPC call times out.")
    rpc_retries: int = Field(5, ge=0, description="Retries (with backoff) of a failing RPC call.")
    gas_multiplier: float = Field(1.2, ge=1.0, description="Safety margin on estimated gas.")
    # The training daemon (`datanet daemon`): which jobs this node takes and where it works.
    models_dir: Path | None = Field(
        None, description="Base models cache (org/name -> models_dir/org--name); unset: data_dir/models."
    )
    work_dir: Path | None = Field(
        None, description="Per-job working directories (data, checkpoints, adapter); unset: data_dir/jobs."
    )
    max_active_jobs: int = Field(
        1, ge=1, description="Most jobs this node holds claimed and unfinished at once; more wait unclaimed."
    )
    accepted_methods: list[Literal["lora", "qlora"]] = Field(
        ["lora", "qlora"], description="Fine-tuning methods this node takes jobs for (lora, qlora)."
    )
    min_pool: Decimal = Field(
        Decimal(0), ge=0, decimal_places=18, description="Smallest job reward pool worth claiming, in OPEN (e.g. 50)."
    )
    max_memory_gb: float | None = Field(
        None, gt=0, description="Memory training may use (GB); unset: free GPU memory, else available RAM."
    )
    allow_downloads: bool = Field(
        False,
        description="Fetch a job's base model by hub id into models_dir when it is not there (needs internet "
        "and, for gated models, HF_TOKEN); off: only local directories and models already in models_dir.",
    )
    attribution_dtype: Literal["float64", "float32"] = Field(
        "float64",
        description="Dtype of attribution's gradients (committed in the document; verifiers use the same). float64 "
        "reproduces best across CPUs; float32 is about twice as fast on a CPU.",
    )
    attribution_threads: int = Field(
        0, ge=0, description="Threads of the attribution worker (0: every core). The same count reproduces bit "
        "for bit; another differs in the last bits only, which verify's payout tolerance absorbs.",
    )  # fmt: skip
    job_retries: int = Field(5, ge=0, description="Retries of a job step failing for a transient reason.")
    retry_delay: float = Field(
        30.0, gt=0, description="Seconds before a waiting or failed step is retried (doubles per retry)."
    )

    @property
    def min_pool_units(self) -> int:
        """`min_pool` in OPEN base units (10**18 per OPEN), exactly."""
        return int(self.min_pool * 10**18)

    def for_chain(self, chain_id: int) -> Settings:
        """These settings with the defaults that depend on the chain: on the dev chain (31337),
        where anvil mines a block only when a transaction arrives, `confirmations` defaults to 0 (with
        2, the last job posted would stay unseen until two more transactions). An explicit value
        (argument, DATANET_CONFIRMATIONS, TOML) wins."""
        from node.chain.devchain import DEV_CHAIN_ID  # node.chain imports this module

        if chain_id == DEV_CHAIN_ID and "confirmations" not in self.model_fields_set:
            return self.model_copy(update={"confirmations": 0})
        return self

    def worker_threads(self) -> int:
        return self.attribution_threads or os.cpu_count() or 1

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def keystore_dir(self) -> Path:
        """Where `datanet wallet` keeps encrypted keystores (one JSON file per wallet)."""
        return self.data_dir / "keystores"

    @property
    def state_db(self) -> Path:
        """SQLite file holding watcher checkpoints and the daemon's job states."""
        return self.data_dir / "state.sqlite"

    @property
    def models_path(self) -> Path:
        """Where base models are cached (`models_dir`, default data_dir/models)."""
        return self.models_dir or self.data_dir / "models"

    @property
    def jobs_path(self) -> Path:
        """Where each job gets its working directory (`work_dir`, default data_dir/jobs)."""
        return self.work_dir or self.data_dir / "jobs"

    def deployment_file(self, network: str | None = None) -> Path:
        return self.deployments_dir / f"{network or self.network}.json"


def load_settings(**overrides: object) -> Settings:
    """The settings (`overrides` > env > TOML > defaults); an invalid value raises ConfigError
    naming the setting, the value, where to fix it and what it must be (one line per field)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        problems = []
        for err in e.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            where = f"DATANET_{field.upper()} (environment) or `{field}` in datanet.toml"
            problems.append(f"setting {field} = {err.get('input')!r} is invalid: {err['msg']}; fix {where}")
        raise ConfigError("; ".join(problems) + ".") from e
