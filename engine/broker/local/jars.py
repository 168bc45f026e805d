"""Fetch the Apache Kafka broker jars from Maven Central once, into a per-user cache."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from engine.errors import LocalKafkaError

_INSTALL_HINT = "install it (Debian/Ubuntu: `apt-get install {package}`; macOS: `brew install {brew}`)"


def deploy_dir() -> Path:
    """The launcher files (pom.xml, server.properties, log4j2.yaml): in the wheel, or in the source tree."""
    packaged = Path(__file__).resolve().parents[2] / "_deploy" / "kafka"
    if packaged.is_dir():
        return packaged
    source = Path(__file__).resolve().parents[3] / "deploy" / "kafka"
    if source.is_dir():
        return source
    raise LocalKafkaError(f"the local Kafka files are missing (looked in {packaged} and {source})")


def cache_root() -> Path:
    """Where fetched jars are kept between runs (XDG cache directory)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "escalera" / "kafka-jars"


def require_java() -> str:
    """The `java` executable, checked to be Java 17 or newer (Kafka 4 brokers need 17)."""
    java = shutil.which("java")
    if java is None:
        raise LocalKafkaError(
            "Java 17+ is needed to run the local Kafka broker and `java` is not on PATH: "
            + _INSTALL_HINT.format(package="openjdk-17-jre-headless", brew="openjdk@17")
        )
    probe = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)', probe.stderr + probe.stdout)
    if match is None or int(match.group(1)) < 17:
        found = (probe.stderr or probe.stdout).splitlines()[:1]
        raise LocalKafkaError(f"the local Kafka broker needs Java 17 or newer; found: {found}")
    return java


def require_maven() -> str:
    """The `mvn` executable."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalKafkaError(
            "Maven is needed once to fetch the Kafka broker jars and `mvn` is not on PATH: "
            + _INSTALL_HINT.format(package="maven", brew="maven")
        )
    return mvn


def broker_jars() -> Path:
    """A directory holding every jar of the broker; fetched with Maven on first use, then cached."""
    pom = deploy_dir() / "pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    target = cache_root() / digest
    if (target / ".complete").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be fetching the same jars
        if not (target / ".complete").is_file():
            _fetch(pom, target)
    return target


def _fetch(pom: Path, target: Path) -> None:
    mvn = require_maven()
    # Maven runs quietly (-q) for a minute or so on a fresh machine: say what is happening (issue 16: nothing was
    # printed while the jars were fetched).
    print(f"fetching the Apache Kafka broker jars with Maven into {target} (once; about a minute)", file=sys.stderr,
          flush=True)  # fmt: skip
    staging = Path(tempfile.mkdtemp(prefix="jars-", dir=target.parent))
    command = [
        mvn, "-B", "-q", "-f", str(pom),
        "dependency:copy-dependencies", f"-DoutputDirectory={staging}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    jars = list(staging.glob("*.jar"))
    if result.returncode != 0 or not any(j.name.startswith("kafka_2.13-") for j in jars):
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise LocalKafkaError(f"Maven could not fetch the Kafka broker jars (exit {result.returncode}):\n{tail}")
    (staging / ".complete").write_text(f"{len(jars)} jars\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
