"""Where and how the local stack runs (StackConfig): ports, state dir, buckets, the function."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


SERVERS = ("gcs", "firestore", "function", "relay")


@dataclass
class StackConfig:
    """Where and how the local stack runs. Ports are on ``host`` (loopback)."""

    gcs_port: int = 4443  # the storage API clients use (served by the relay, proxied to fake-gcs)
    firestore_port: int = 8086
    function_port: int = 8090
    gcs_backend_port: int = 0  # fake-gcs-server's own port; 0 = any free port, chosen at up()
    state_dir: Path = Path(".edgeship/local")
    project: str = "edgeship-local"
    buckets: tuple[str, ...] = ("edgeship",)
    function_source: Path = REPO_ROOT / "functions/register_model/main.py"
    function_target: str = "register_model"
    function_env: dict[str, str] = field(default_factory=dict)  # extra env for the function
    gcs_backend: str = "memory"  # or "filesystem" (objects kept under STATE_DIR/gcs-data)
    host: str = "127.0.0.1"
    node_dir: Path = REPO_ROOT / "infra/local"
    start_timeout_s: float = 30.0
    relay_max_attempts: int = 50

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        self.function_source = Path(self.function_source)
        self.node_dir = Path(self.node_dir)
        self.buckets = tuple(self.buckets)
        if self.gcs_backend not in ("memory", "filesystem"):
            raise ValueError(
                f"gcs_backend must be 'memory' or 'filesystem', got {self.gcs_backend!r}")
        for name in ("gcs_port", "firestore_port", "function_port"):
            port = getattr(self, name)
            if not isinstance(port, int) or not 0 < port < 65536:
                raise ValueError(f"StackConfig.{name} must be a port 1..65535, got {port!r}")

    @property
    def gcs_url(self) -> str:
        return f"http://{self.host}:{self.gcs_port}"

    @property
    def function_url(self) -> str:
        return f"http://{self.host}:{self.function_port}/"

    def env(self) -> dict[str, str]:
        """The environment variables that point google-cloud clients at this stack."""
        return {
            "STORAGE_EMULATOR_HOST": self.gcs_url,
            "FIRESTORE_EMULATOR_HOST": f"{self.host}:{self.firestore_port}",
            "GOOGLE_CLOUD_PROJECT": self.project,
        }

    def log_path(self, server: str) -> Path:
        return self.state_dir / f"{server}.log"
