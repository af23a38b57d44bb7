"""The bridge's image built and run for real with Podman, on loopback only.

How Podman runs on our test machines (docs/container.md has the why of each): Debian's
podman with runc and cgroupfs, no default ulimits, `--format docker` so the HEALTHCHECK
stays in the image, and a base image made from Debian's packages with mmdebstrap, because
no image registry can be reached. The base is made once and kept in Podman's image store;
the bridge's image is rebuilt per test session, which Podman's layer cache makes quick
unless requirements.lock changed.

A machine where Podman cannot run fails these tests with the reason; it never skips them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from tests.support.bridge_process import REPO_ROOT, SETUP_CODE, TEST_TIMING
from tests.support.wait import free_port

RUNC = "/usr/sbin/runc"
#: Made from Debian's packages: what `python:3.12-slim` gives users, without a registry.
BASE_IMAGE = "localhost/debian-python:bookworm"
BASE_PACKAGES = "python3,python3-venv,ca-certificates"
#: The Dockerfile's `ARG UID`: the bridge's user in the image, owner of /data.
IMAGE_UID = 10001
#: Where the image reads its configuration (the Dockerfile's ENTRYPOINT `-c`).
CONFIG_IN_IMAGE = "/config/bridge.yaml"
INSTALL_HINT = (
    "./scripts/test.sh installs podman, runc, mmdebstrap and uidmap from Debian's packages"
)


class PodmanError(AssertionError):
    """Podman cannot do what a test needs; the message says what and why."""


class Podman:
    """`podman` with the settings our machines need; `run_podman(...)` returns the result."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        # The sandboxed kernel refuses setrlimit, so containers must not set ulimits.
        self.conf = work_dir / "containers.conf"
        self.conf.write_text("[containers]\ndefault_ulimits = []\n")
        self._env = {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def check_usable(self) -> None:
        """Fail with the reason when this machine cannot run the container tests."""
        if shutil.which("podman") is None or not Path(RUNC).exists():
            raise PodmanError(f"podman or {RUNC} is missing: {INSTALL_HINT}")
        if os.geteuid() != 0:
            raise PodmanError(
                "the container tests run podman as root (cgroupfs, host networking); "
                f"this is uid {os.geteuid()}"
            )
        self.run_podman("info", timeout=60)

    def run_podman(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        command = ["podman", "--runtime", RUNC, "--cgroup-manager=cgroupfs", *args]
        done = subprocess.run(
            command, env=self._env, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise PodmanError(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )
        return done

    def ensure_base_image(self) -> None:
        """The local stand-in for python:3.12-slim, made once (about 20 s) and kept."""
        if self.run_podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
            return
        if shutil.which("mmdebstrap") is None:
            raise PodmanError(f"mmdebstrap is missing: {INSTALL_HINT}")
        rootfs = self.work_dir / "rootfs.tar"
        subprocess.run(
            [
                "mmdebstrap",
                "--variant=minbase",
                f"--include={BASE_PACKAGES}",
                "bookworm",
                str(rootfs),
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
        try:
            self.run_podman("import", str(rootfs), BASE_IMAGE, timeout=300)
        finally:
            rootfs.unlink()

    def build_image(self) -> str:
        """Build the repository's Dockerfile on the local base; returns the image name.

        Named after this checkout, so worktrees side by side do not replace each other's.
        PyPI is reachable during the build only through this machine's certificates.
        """
        checkout = hashlib.sha256(str(REPO_ROOT).encode()).hexdigest()[:12]
        image = f"localhost/mqtt-hk-bridge-test:{checkout}"
        previous = self._image_id(image)
        self.run_podman(
            "build", "--format", "docker", "--network=host",
            "-v", "/etc/ssl/certs:/etc/ssl/certs:ro",
            "--build-arg", f"BASE={BASE_IMAGE}", "-t", image, str(REPO_ROOT),
            timeout=900,
        )  # fmt: skip
        if previous and previous != self._image_id(image):
            # The last session's image of this checkout, untagged now: do not let them pile up.
            self.run_podman("rmi", previous, check=False)
        return image

    def _image_id(self, image: str) -> str:
        done = self.run_podman("image", "inspect", "--format", "{{.Id}}", image, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""


_names = itertools.count()


class BridgeContainer:
    """The image started like `docker run --network=host`, its HAP server on 127.0.0.1.

    The broker's address comes from the environment, as in docker-compose.yml; the rest
    from a bridge.yaml mounted at /config/bridge.yaml; the state from a host folder
    mounted at /data, so each `start()` (a new container) finds the previous one's state.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        podman: Podman,
        image: str,
        directory: Path,
        mqtt_port: int,
        environment: dict[str, str] | None = None,
        **overrides: Any,
    ) -> None:
        self.podman = podman
        self.image = image
        self.dir = directory
        self.data_dir = directory / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chown(self.data_dir, IMAGE_UID, IMAGE_UID)  # what the image's user may write
        self.hap_port = free_port()
        self.name = f"mqtt-hk-bridge-test-{os.getpid()}-{next(_names)}"
        self.environment = {
            "MQTT_HK_BRIDGE_MQTT_HOST": "127.0.0.1",
            "MQTT_HK_BRIDGE_MQTT_PORT": str(mqtt_port),
            **(environment or {}),
        }
        config: dict[str, Any] = {
            "log_level": "debug",
            "mqtt": {"keepalive": 10},
            "homekit": {
                "name": "Container Bridge",
                "address": self.host,
                "port": self.hap_port,
                "setup_code": SETUP_CODE,
            },
            "zeroconf": {"interfaces": ["127.0.0.1"]},  # mDNS stays on loopback
            "timing": dict(TEST_TIMING),
        }
        for key, value in overrides.items():
            config[key] = {**config[key], **value} if isinstance(value, dict) else value
        self.config_path = directory / "bridge.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.setup_code = SETUP_CODE

    def start(self, timeout: float = 30.0) -> None:
        """A new container on the same state; returns once the image's own health check
        says healthy (MQTT connected, HAP listening)."""
        self.remove()
        environment = [
            arg for key, value in self.environment.items() for arg in ("-e", f"{key}={value}")
        ]
        self.podman.run_podman(
            "run", "-d", "--name", self.name, "--network=host",
            "-v", f"{self.config_path}:{CONFIG_IN_IMAGE}:ro",
            "-v", f"{self.data_dir}:/data",
            *environment, self.image,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while self.healthcheck() != 0:
            if not self.running:
                raise AssertionError(f"the container exited:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not healthy within {timeout}s ({self.health_output()}):\n{self.logs()}"
                )
            time.sleep(0.2)  # bounded poll of a process we own; each check takes ~0.3 s

    def healthcheck(self) -> int:
        """`podman healthcheck run`: the image's HEALTHCHECK once; 0 healthy, 1 not."""
        return self.podman.run_podman("healthcheck", "run", self.name, check=False).returncode

    def health_output(self) -> str:
        """What the last health check printed (its reason when unhealthy)."""
        state = json.loads(self.inspect("{{json .State.Health}}"))
        log = state.get("Log") or [{}]
        return str(log[-1].get("Output", "")).strip()

    def inspect(self, template: str) -> str:
        return self.podman.run_podman("inspect", self.name, "--format", template).stdout.strip()

    @property
    def running(self) -> bool:
        return self.inspect("{{.State.Running}}") == "true"

    def stop(self, grace: float = 5.0) -> tuple[int, float]:
        """SIGTERM, SIGKILL after `grace` s (as `docker stop -t`): (exit code, seconds)."""
        started = time.monotonic()
        self.podman.run_podman("stop", "--time", str(int(grace)), self.name, timeout=grace + 30)
        elapsed = time.monotonic() - started
        return int(self.inspect("{{.State.ExitCode}}")), elapsed

    def logs(self) -> str:
        done = self.podman.run_podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def remove(self) -> None:
        self.podman.run_podman("rm", "--force", "--ignore", self.name, timeout=60)

    @property
    def device_id(self) -> str:
        """The HAP device id from the state the container keeps in /data."""
        state = json.loads((self.data_dir / "homekit-state.json").read_text())
        return str(state["mac"])


def run_tool(podman: Podman, image: str, *args: str, mounts: dict[Path, str]) -> str:
    """`mqtt-hk-bridge <args>` in a throwaway container of the image, as root (so it may
    write into a host folder mounted in); its standard output."""
    volumes = [arg for host, inside in mounts.items() for arg in ("-v", f"{host}:{inside}")]
    done = podman.run_podman(
        "run", "--rm", "--network=none", "--user", "root", "--entrypoint", "mqtt-hk-bridge",
        *volumes, image, *args,
    )  # fmt: skip
    return done.stdout
