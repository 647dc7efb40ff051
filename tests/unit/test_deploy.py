"""The Docker Compose deployment (deploy/): every file parses and the pieces point at each other.

Docker is not run here (no engine in CI): these tests check the files' structure — the four services, the TimescaleDB
volume path, no secret in the compose file, Prometheus scraping the service's port, Grafana provisioned from the
dashboard folder, and every metric the dashboard queries existing in ``ServiceMetrics().render()``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import stat
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from marketsynth.config import Settings
from marketsynth.trading.service.monitoring import ServiceMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "marketsynth.json"
SECRET_WORDS = ("PASSWORD", "SECRET", "API_KEY", "TOKEN", "PRIVATE")


def load(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict:
    return load(COMPOSE)


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: ("" if v is None else str(v)) for k, v in env.items()}


def service_port(compose: dict) -> int:
    """The service's HTTP port: the container side of its published port."""
    ports = compose["services"]["marketsynth"]["ports"]
    assert len(ports) == 1
    return int(str(ports[0]).rsplit(":", 1)[1])


def test_every_yaml_file_parses():
    files = sorted(DEPLOY.rglob("*.yml")) + sorted(DEPLOY.rglob("*.yaml"))
    assert {f.relative_to(DEPLOY).as_posix() for f in files} >= {
        "docker-compose.yml", "prometheus/prometheus.yml", "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/marketsynth.yml"}
    for f in files:
        assert isinstance(load(f), dict), f


def test_compose_services_images_and_build(compose):
    services = compose["services"]
    assert set(services) == {"timescaledb", "marketsynth", "prometheus", "grafana"}
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb-ha:pg")
    build = services["marketsynth"]["build"]
    assert (DEPLOY / build["context"]).resolve() == DEPLOY.parent  # the repository root
    assert build["dockerfile"] == "deploy/Dockerfile" and (DEPLOY / "Dockerfile").is_file()
    assert services["marketsynth"]["command"] == ["trade", "--config", "/config/marketsynth.yaml"]
    assert services["marketsynth"]["depends_on"]["timescaledb"]["condition"] == "service_healthy"
    for name in ("timescaledb", "marketsynth", "prometheus", "grafana"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"


def test_timescaledb_data_survives_recreation(compose):
    db = compose["services"]["timescaledb"]
    mounts = [str(v) for v in db["volumes"]]
    assert "timescaledb-data:/home/postgres/pgdata" in mounts
    assert "timescaledb-data" in compose["volumes"]  # a named volume, not the container's own layer
    text = COMPOSE.read_text(encoding="utf-8")
    assert not any("/var/lib/postgresql/data" in v for s in compose["services"].values() for v in
                   map(str, s.get("volumes", [])))
    assert "/var/lib/postgresql/data" not in "".join(line for line in text.splitlines(keepends=True)
                                                     if not line.lstrip().startswith("#"))


def test_no_secret_values_in_the_compose_file(compose):
    for name, service in compose["services"].items():
        for key, value in env_of(service).items():
            if any(word in key.upper() for word in SECRET_WORDS):
                # only an interpolation from deploy/.env, without a default value
                assert re.fullmatch(r"\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}", value), f"{name}.{key} = {value!r}"
                default = re.fullmatch(r"\$\{[A-Z0-9_]+(?::?-([^}]*))?(?::?\?[^}]*)?\}", value)
                assert default and not default.group(1), f"{name}.{key} has an inline default"
            # no URL with a password in it, not even an interpolated one (it would show wherever the URL is printed)
            plain = re.sub(r"\$\{[^}]*\}", "X", value)
            assert not re.search(r"://[^/@\s:]+:[^/@\s]+@", plain), f"{name}.{key} holds a password"
    store = env_of(compose["services"]["marketsynth"])["MARKETSYNTH_STORE"]
    assert store.startswith("postgresql://") and "@timescaledb:5432/" in store
    assert env_of(compose["services"]["marketsynth"])["PGPASSWORD"].startswith("${POSTGRES_PASSWORD")
    # the example env file holds names, never values for the secrets
    for line in (DEPLOY / ".env.example").read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            if any(word in key for word in SECRET_WORDS):
                assert value == "", f".env.example sets {key}"
    ignored = (DEPLOY / ".gitignore").read_text(encoding="utf-8").split()
    assert ".env" in ignored and "secrets/*" in ignored


def test_service_mounts_config_and_secrets_read_only(compose):
    volumes = [str(v) for v in compose["services"]["marketsynth"]["volumes"]]
    assert "./marketsynth.yaml:/config/marketsynth.yaml:ro" in volumes
    assert any(v.startswith("./secrets:") and v.endswith(":ro") for v in volumes)
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert "torch==2.13.0" in dockerfile and "download.pytorch.org/whl/cpu" in dockerfile
    assert "pip install ." in dockerfile and re.search(r"^FROM python:3\.\d+-slim", dockerfile, re.M)
    assert re.search(r"^USER ", dockerfile, re.M)  # not root
    assert f"EXPOSE {service_port(compose)}" in dockerfile
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    assert ignore[ignore.index("**") if "**" in ignore else 0] == "**"  # everything out, then the sources back in
    assert {"!pyproject.toml", "!README.md", "!src/", "!deploy/entrypoint.py"} <= set(ignore)
    assert "COPY deploy/entrypoint.py /usr/local/lib/marketsynth/entrypoint.py" in dockerfile
    assert 'ENTRYPOINT ["python", "/usr/local/lib/marketsynth/entrypoint.py"]' in dockerfile


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message} against ``env``."""
    def one(match):
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        if env.get(name):
            return env[name]
        if op.endswith("?"):
            raise KeyError(f"{name} must be set: {arg}")
        return arg

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}", one, value)


def entrypoint():
    spec = importlib.util.spec_from_file_location("deploy_entrypoint", DEPLOY / "entrypoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_container_runs_the_trading_config_on_timescaledb_listening_for_prometheus(compose, tmp_path, capsys):
    """deploy/entrypoint.py adapts the mounted config with the compose environment; the result is a valid config."""
    config_file = DEPLOY / "marketsynth.yaml"  # the example trading config the compose file mounts
    assert config_file.exists(), "deploy/marketsynth.yaml, the trading config the stack mounts, is missing"
    service = compose["services"]["marketsynth"]
    dot_env = {"POSTGRES_PASSWORD": "pw-from-dot-env", "MARKETSYNTH_SECRETS_FILE": "/run/secrets/marketsynth/k.yaml"}
    env = {k: interpolate(v, dot_env) for k, v in env_of(service).items()}
    copied = tmp_path / "marketsynth.yaml"
    copied.write_text(config_file.read_text(encoding="utf-8"), encoding="utf-8")
    args = entrypoint().rewrite_args(["trade", "--config", str(copied)], env, out_dir=tmp_path / "out")
    assert args[:2] == ["trade", "--config"] and args[2] != str(copied)
    adapted = Path(args[2])
    assert stat.S_IMODE(adapted.stat().st_mode) == 0o600
    settings = Settings.model_validate(load(adapted)).trade
    assert settings.store == "postgresql://marketsynth@timescaledb:5432/marketsynth"  # no password in the URL
    assert settings.http_host == "0.0.0.0"
    assert settings.secrets_file == "/run/secrets/marketsynth/k.yaml"
    assert settings.http_port == service_port(compose)
    original = Settings.model_validate(load(config_file)).trade
    assert settings.markets == original.markets and settings.risk == original.risk  # the rest untouched
    err = capsys.readouterr().err
    assert "trade.store" in err and "timescaledb" not in err and "pw-from-dot-env" not in err
    # nothing to replace, or a config marketsynth must report itself: passed through unchanged
    assert entrypoint().rewrite_args(["trade", "--config", str(copied)], {}, out_dir=tmp_path) == [
        "trade", "--config", str(copied)]
    missing = ["trade", "--config", str(tmp_path / "nope.yaml")]
    assert entrypoint().rewrite_args(missing, env, out_dir=tmp_path) == missing
    assert entrypoint().rewrite_args(["data", "check"], env, out_dir=tmp_path) == ["data", "check"]


def test_service_port_agrees_everywhere(compose):
    port = service_port(compose)
    prometheus = load(DEPLOY / "prometheus" / "prometheus.yml")
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "marketsynth")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert [t for c in job["static_configs"] for t in c["targets"]] == [f"marketsynth:{port}"]
    health = " ".join(compose["services"]["marketsynth"]["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/health" in health
    config = DEPLOY / "marketsynth.yaml"  # the service engineer's trading config
    if not config.exists():
        pytest.skip("deploy/marketsynth.yaml (the trading config) is not there yet")
    assert load(config)["trade"]["http_port"] == port


def test_grafana_provisioning_points_at_the_dashboard(compose):
    grafana = compose["services"]["grafana"]
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in grafana["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    providers = load(DEPLOY / "grafana" / "provisioning" / "dashboards" / "marketsynth.yml")["providers"]
    path = providers[0]["options"]["path"]
    assert mounts[path] == "./grafana/dashboards"  # the provider reads the folder the dashboard is mounted in
    assert (DEPLOY / mounts[path] / DASHBOARD.name).is_file()
    datasources = load(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    prometheus = next(d for d in datasources if d["type"] == "prometheus")
    assert prometheus["url"] == "http://prometheus:9090"
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": prometheus["uid"]}, panel["title"]
    assert env_of(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == f"{path}/{DASHBOARD.name}"


def test_dashboard_queries_only_metrics_the_service_exports():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    metrics = ServiceMetrics()
    metrics.set_position("BTCUSDT", 0.0)  # the one labelled gauge without series until a position is set
    exported = {s.name for f in text_string_to_metric_families(metrics.render()[0].decode()) for s in f.samples}
    titles = [p["title"].lower() for p in dashboard["panels"]]
    for topic in ("equity", "drawdown", "positions", "orders", "p&l", "latency", "data lag", "errors"):
        assert any(topic in t for t in titles), f"no panel for {topic}"
    queried = set()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names = set(re.findall(r"\bmarketsynth_[a-z0-9_]+", target["expr"]))
            others = {n for n in re.findall(r"\b[a-z_][a-z0-9_]*\b(?=\s*[{\[]|$)", target["expr"])
                      if not n.startswith("marketsynth_")}
            assert names or others == {"up"}, target["expr"]
            queried |= names
    missing = queried - exported
    assert not missing, f"the dashboard queries metrics the service does not export: {sorted(missing)}"
    # the counters and the histogram are queried by their exposed sample names
    assert {"marketsynth_orders_total", "marketsynth_exchange_errors_total",
            "marketsynth_signal_latency_seconds_bucket", "marketsynth_position_units"} <= queried
