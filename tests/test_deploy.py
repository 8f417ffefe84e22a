"""
Invariants of the Kubernetes manifests, the Dockerfile and the dashboard.

The overlays are rendered with deploy/render.py (the kustomize subset that
deploy/ uses) and checked against what the application declares: its settings
fields, its topics, its HTTP routes, its console script and its metrics.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from deploy import check
from deploy.render import (
    RenderError,
    Resource,
    content_hash,
    load_yaml_documents,
    pod_specs,
    render,
)
from message_events import metrics
from message_events import settings as names
from message_events.settings import Settings, load_settings
from message_events.topics import declared_topics

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
OVERLAYS = ("dev", "prod")
APP_IMAGE = "message-events"
FIELDS = frozenset(name.upper() for name in Settings.model_fields)
SECRET_WORDS = ("PASSWORD", "CREDENTIALS", "SECRET", "TOKEN")
CALLBACK_SECRET = "message-events-callback"
# Secrets the overlay expects to exist in the cluster, managed outside git.
EXTERNAL_SECRETS = {
    "dev": frozenset({"message-events-tls"}),
    "prod": frozenset({CALLBACK_SECRET, "message-events-tls"}),
}
INGRESS_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/callbacks/messaging"})

Container = dict[str, Any]


@functools.cache
def _render_once(overlay: str) -> tuple[Resource, ...]:
    return tuple(render(DEPLOY / "overlays" / overlay))


def rendered(overlay: str) -> list[Resource]:
    """The overlay's resources, a copy each test may change."""
    return copy.deepcopy(list(_render_once(overlay)))


def of_kind(resources: list[Resource], kind: str) -> list[Resource]:
    """The resources of one kind."""
    return [r for r in resources if r["kind"] == kind]


def named(resources: list[Resource], kind: str, name: str) -> Resource:
    """The one resource of that kind and name."""
    found = [r for r in of_kind(resources, kind) if r["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def image_name(image: str) -> str:
    """The last path part of an image reference, without tag or digest."""
    return re.split(r"[:@]", image.rsplit("/", 1)[-1])[0]


def containers(
    resources: list[Resource], *, app_only: bool = True
) -> Iterator[tuple[Resource, dict[str, Any], Container]]:
    """(resource, pod spec, container) for every container of the overlay."""
    for resource in resources:
        for pod in pod_specs(resource):
            for container in pod.get("initContainers", []) + pod["containers"]:
                if not app_only or image_name(container["image"]) == APP_IMAGE:
                    yield resource, pod, container


def app_config_map(resources: list[Resource]) -> Resource:
    """The generated ConfigMap the workloads read."""
    maps = of_kind(resources, "ConfigMap")
    assert len(maps) == 1, f"expected one ConfigMap, found {len(maps)}"
    return maps[0]


def overlay_settings(overlay: str) -> Settings:
    """The settings a pod of the overlay builds from its ConfigMap."""
    data = app_config_map(rendered(overlay))["data"]
    return load_settings(**{key.lower(): value for key, value in data.items()})


def processors(resources: list[Resource]) -> dict[str, Resource]:
    """The processor Deployments, by processor name (from their arguments)."""
    found: dict[str, Resource] = {}
    for resource, _, container in containers(of_kind(resources, "Deployment")):
        args = container.get("args", [])
        if args[:1] == ["process"]:
            found[args[1]] = resource
    return found


def ingest_deployment(resources: list[Resource]) -> Resource:
    """The Deployment running ``message-events ingest``."""
    found = [
        r
        for r, _, c in containers(of_kind(resources, "Deployment"))
        if c.get("args", [])[:1] == ["ingest"]
    ]
    assert len(found) == 1
    return found[0]


def the_container(resource: Resource) -> Container:
    """The single container of a workload."""
    (pod,) = pod_specs(resource)
    (container,) = pod["containers"]
    result: Container = container
    return result


def declared_topic_file() -> dict[str, tuple[int, dict[str, str]]]:
    """deploy/topics/topics.yaml as {topic: (partitions, config)}."""
    docs = load_yaml_documents((DEPLOY / "topics" / "topics.yaml").read_text())
    result: dict[str, tuple[int, dict[str, str]]] = {}
    for doc in docs:
        assert doc["kind"] == "KafkaTopic"
        spec = doc["spec"]
        assert doc["metadata"]["name"] == spec["topicName"]
        assert "replicas" not in spec, "replicas are set per overlay"
        config = {key: str(value) for key, value in spec["config"].items()}
        result[spec["topicName"]] = (spec["partitions"], config)
    return result


# Topics


def test_topics_file_matches_declared_topics() -> None:
    """The one topic declaration of the manifests is the application's."""
    settings = load_settings(events_partitions=12)
    expected = {s.name: (s.partitions, s.config) for s in declared_topics(settings)}

    actual = declared_topic_file()

    assert expected == actual
    assert actual["bandwidth.messaging.events"] == (
        12,
        {"cleanup.policy": "delete", "retention.ms": str(7 * 24 * 3600 * 1000)},
    )
    assert actual["bandwidth.messaging.events.dlq"] == (
        1,
        {"cleanup.policy": "delete", "retention.ms": str(14 * 24 * 3600 * 1000)},
    )
    for processor in names.PROCESSORS:
        assert actual[f"message-events.{processor}.dedup"][1] == {
            "cleanup.policy": "compact,delete",
            "retention.ms": "172800000",
        }
    for compacted in (names.DELIVERY_TOPIC, names.MMS_TOPIC):
        assert actual[compacted][1]["cleanup.policy"] == "compact"


def test_prod_kafka_topics_are_the_declared_topics() -> None:
    """prod's KafkaTopics carry the partitions, replicas and config of its settings."""
    resources = rendered("prod")
    settings = overlay_settings("prod")
    expected = {
        s.name: (s.partitions, s.replication, s.config)
        for s in declared_topics(settings)
    }
    crds = check.load_crd_schemas(check.crd_dir())

    topics = of_kind(resources, "KafkaTopic")
    actual = {
        t["spec"]["topicName"]: (
            t["spec"]["partitions"],
            t["spec"]["replicas"],
            {k: str(v) for k, v in t["spec"]["config"].items()},
        )
        for t in topics
    }

    assert expected == actual
    assert settings.replication_factor == 3
    for topic in topics:
        assert (topic["apiVersion"], "KafkaTopic") in crds
        assert topic["metadata"]["labels"]["strimzi.io/cluster"]


def test_dev_topics_job_creates_the_declared_topics() -> None:
    """dev has no Strimzi: a Job runs `topics` with the dev settings, on its broker."""
    resources = rendered("dev")
    settings = overlay_settings("dev")
    config_map = app_config_map(resources)["metadata"]["name"]
    broker = named(resources, "StatefulSet", "kafka")
    service = named(resources, "Service", broker["spec"]["serviceName"])

    (job,) = of_kind(resources, "Job")
    container = the_container(job)
    declared = {s.name: (s.partitions, s.config) for s in declared_topics(settings)}

    assert not of_kind(resources, "KafkaTopic")
    assert container["args"] == ["topics"]
    assert container["envFrom"] == [{"configMapRef": {"name": config_map}}]
    assert declared == declared_topic_file()
    assert settings.replication_factor <= broker["spec"]["replicas"]
    host, port = str(settings.kafka_bootstrap_servers).split(":")
    assert host == f"kafka-0.{service['metadata']['name']}"
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}


# Settings and secrets


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_map_holds_valid_settings(overlay: str) -> None:
    """Every ConfigMap key is a settings field and every value validates."""
    data = app_config_map(rendered(overlay))["data"]

    settings = overlay_settings(overlay)

    assert set(data) <= FIELDS, sorted(set(data) - FIELDS)
    assert settings.kafka_bootstrap_servers
    assert data["LOG_FORMAT"] == "json"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_looking_key_in_config_maps(overlay: str) -> None:
    """Credentials never sit in a ConfigMap."""
    keys = [key for cm in of_kind(rendered(overlay), "ConfigMap") for key in cm["data"]]

    leaks = [k for k in keys if any(word in k.upper() for word in SECRET_WORDS)]

    assert keys
    assert leaks == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_read_only_settings_variables(overlay: str) -> None:
    """Each variable a pod of the application sees is a settings field."""
    resources = rendered(overlay)
    maps = {cm["metadata"]["name"]: cm for cm in of_kind(resources, "ConfigMap")}
    seen: set[str] = set()

    for _, pod, container in containers(resources):
        assert pod["enableServiceLinks"] is False, "service links add variables"
        for source in container.get("envFrom", []):
            assert set(source) == {"configMapRef"}, "envFrom only from the ConfigMap"
            seen.update(maps[source["configMapRef"]["name"]]["data"])
        for variable in container.get("env", []):
            seen.add(variable["name"])
            if any(word in variable["name"] for word in SECRET_WORDS):
                assert "value" not in variable
                assert variable["valueFrom"]["secretKeyRef"]["name"] == CALLBACK_SECRET

    assert seen
    assert seen <= FIELDS, sorted(seen - FIELDS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_credentials_come_from_the_callback_secret(overlay: str) -> None:
    """Only the ingress reads the credentials, from the Secret's keys."""
    resources = rendered(overlay)
    ingest = the_container(ingest_deployment(resources))
    refs = {
        v["name"]: v["valueFrom"]["secretKeyRef"]
        for v in ingest["env"]
        if "secretKeyRef" in v.get("valueFrom", {})
    }

    assert set(refs) == {
        "CALLBACK_USERNAME",
        "CALLBACK_PASSWORD",
        "CALLBACK_EXTRA_CREDENTIALS",
    }
    assert {r["name"] for r in refs.values()} == {CALLBACK_SECRET}
    assert refs["CALLBACK_EXTRA_CREDENTIALS"]["optional"] is True
    for processor in processors(resources).values():
        assert "env" not in the_container(processor)


def test_dev_secret_is_an_obvious_placeholder() -> None:
    """dev ships fake credentials, with the keys the ingress reads."""
    secret = named(rendered("dev"), "Secret", CALLBACK_SECRET)
    values = {
        key: base64.b64decode(value).decode() for key, value in secret["data"].items()
    }

    assert set(values) == {"username", "password", "extra-credentials"}
    assert values["username"].startswith("CHANGE-ME")
    assert values["password"].startswith("CHANGE-ME")
    assert json.loads(values["extra-credentials"]) == {}


def test_prod_leaves_the_callback_secret_to_the_cluster() -> None:
    """prod renders no Secret, so an apply cannot overwrite the real one."""
    assert of_kind(rendered("prod"), "Secret") == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_resolve(overlay: str) -> None:
    """ConfigMaps, Secrets, accounts and targets referred to are rendered."""
    resources = rendered(overlay)
    present = {(r["kind"], r["metadata"]["name"]) for r in resources}
    external = {("Secret", name) for name in EXTERNAL_SECRETS[overlay]}
    refs: set[tuple[str, str]] = set()

    for resource in resources:
        for pod in pod_specs(resource):
            if "serviceAccountName" in pod:
                refs.add(("ServiceAccount", pod["serviceAccountName"]))
            for container in pod["containers"]:
                for source in container.get("envFrom", []):
                    refs.add(("ConfigMap", source["configMapRef"]["name"]))
                for variable in container.get("env", []):
                    key_ref = variable.get("valueFrom", {}).get("secretKeyRef")
                    if key_ref:
                        refs.add(("Secret", key_ref["name"]))
        if resource["kind"] == "HorizontalPodAutoscaler":
            target = resource["spec"]["scaleTargetRef"]
            refs.add((target["kind"], target["name"]))
        if resource["kind"] == "ScaledObject":
            refs.add(("Deployment", resource["spec"]["scaleTargetRef"]["name"]))
        if resource["kind"] == "Ingress":
            for tls in resource["spec"]["tls"]:
                refs.add(("Secret", tls["secretName"]))
            for rule in resource["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    refs.add(("Service", path["backend"]["service"]["name"]))

    missing = refs - present - external

    assert missing == set()
    assert ("ConfigMap", app_config_map(resources)["metadata"]["name"]) in refs


# Scaling and availability


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_processor_replicas_fit_the_partitions(overlay: str) -> None:
    """No processor runs more consumers than the events topic has partitions."""
    resources = rendered(overlay)
    partitions = overlay_settings(overlay).events_partitions

    found = processors(resources)

    assert set(found) == set(names.PROCESSORS)
    for deployment in found.values():
        assert 1 <= deployment["spec"]["replicas"] <= partitions
    for scaled in of_kind(resources, "ScaledObject"):
        spec = scaled["spec"]
        assert spec.get("minReplicaCount", 0) <= spec["maxReplicaCount"] <= partitions


def test_prod_scales_each_processor_on_its_group_lag() -> None:
    """One KEDA kafka trigger per processor, on its group and the events topic."""
    resources = rendered("prod")
    settings = overlay_settings("prod")
    config_keys = set(app_config_map(resources)["data"])
    deployments = processors(resources)

    scaled = {
        s["spec"]["scaleTargetRef"]["name"]: s
        for s in of_kind(resources, "ScaledObject")
    }

    assert set(scaled) == {d["metadata"]["name"] for d in deployments.values()}
    for processor, deployment in deployments.items():
        spec = scaled[deployment["metadata"]["name"]]["spec"]
        (trigger,) = spec["triggers"]
        assert (
            spec["scaleTargetRef"]["envSourceContainerName"]
            == (the_container(deployment)["name"])
        )
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["consumerGroup"] == settings.group_id(processor)
        assert trigger["metadata"]["topic"] == settings.topic(names.EVENTS_TOPIC)
        assert trigger["metadata"]["bootstrapServersFromEnv"] in config_keys
        assert int(trigger["metadata"]["lagThreshold"]) > 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingest_scales_on_cpu(overlay: str) -> None:
    """The ingress has an autoscaling/v2 CPU autoscaler and a CPU request."""
    resources = rendered(overlay)
    deployment = ingest_deployment(resources)

    (hpa,) = of_kind(resources, "HorizontalPodAutoscaler")

    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert the_container(deployment)["resources"]["requests"]["cpu"]
    if overlay == "prod":
        assert deployment["spec"]["replicas"] == 3
        assert hpa["spec"]["minReplicas"] == 3


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_its_disruption_budget(overlay: str) -> None:
    """Each Deployment is selected by exactly one PodDisruptionBudget."""
    resources = rendered(overlay)
    budgets = of_kind(resources, "PodDisruptionBudget")

    for deployment in of_kind(resources, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [
            b
            for b in budgets
            if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(matching) == 1, deployment["metadata"]["name"]
        assert (
            deployment["spec"]["selector"]["matchLabels"]
            == (matching[0]["spec"]["selector"]["matchLabels"])
        )


# Pods


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_outlasts_the_drain(overlay: str) -> None:
    """Kubernetes waits longer than SHUTDOWN_DRAIN_SECONDS before SIGKILL."""
    drain = overlay_settings(overlay).shutdown_drain_seconds
    pods = [pod for _, pod, _ in containers(rendered(overlay))]

    grace = [pod.get("terminationGracePeriodSeconds", 30) for pod in pods]

    assert pods
    assert all(g > drain for g in grace), (grace, drain)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_application_containers_are_non_root_and_read_only(overlay: str) -> None:
    """Pod and container settings together: uid 10001, read-only, no privileges."""
    found = list(containers(rendered(overlay)))

    for _, pod, container in found:
        effective = {**pod.get("securityContext", {}), **container["securityContext"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert effective["runAsNonRoot"] is True
        assert effective["runAsUser"] == 10001
        assert effective["readOnlyRootFilesystem"] is True
        assert effective["allowPrivilegeEscalation"] is False
        assert effective["capabilities"] == {"drop": ["ALL"]}
        assert len(tmp) == 1
        assert "emptyDir" in volumes[tmp[0]["name"]]
        assert pod["automountServiceAccountToken"] is False
    assert found


@pytest.mark.parametrize(("overlay", "count"), [("dev", 5), ("prod", 4)])
def test_application_container_count(overlay: str, count: int) -> None:
    """Ingress, three processors, and in dev the topics Job."""
    assert len(list(containers(rendered(overlay)))) == count


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_bounded_and_unprivileged(overlay: str) -> None:
    """All containers, the dev broker too: limits, non-root, no privilege."""
    for _, pod, container in containers(rendered(overlay), app_only=False):
        effective = {**pod.get("securityContext", {}), **container["securityContext"]}
        resources = container["resources"]
        assert set(resources["requests"]) == {"cpu", "memory"}
        assert set(resources["limits"]) == {"cpu", "memory"}
        assert effective["runAsNonRoot"] is True
        assert effective["runAsUser"] > 0
        assert effective["allowPrivilegeEscalation"] is False
        assert "ALL" in effective["capabilities"]["drop"]
        assert "add" not in effective["capabilities"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_scraping_use_the_served_port(overlay: str) -> None:
    """Probes and Prometheus hit /healthz, /readyz, /metrics on the settings' port."""
    resources = rendered(overlay)
    settings = overlay_settings(overlay)
    expected_ports = {"ingest": settings.http_port}
    expected_ports |= {p: settings.processor_http_port for p in names.PROCESSORS}
    workloads = {"ingest": ingest_deployment(resources), **processors(resources)}

    for component, deployment in workloads.items():
        container = the_container(deployment)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        liveness = container["livenessProbe"]["httpGet"]
        readiness = container["readinessProbe"]["httpGet"]
        assert ports == {"http": expected_ports[component]}
        assert (liveness["path"], liveness["port"]) == ("/healthz", "http")
        assert (readiness["path"], readiness["port"]) == ("/readyz", "http")
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(expected_ports[component])
        assert annotations["prometheus.io/path"] == "/metrics"


def test_probe_paths_exist_in_the_ingress_app() -> None:
    """The paths the manifests use are routes of the aiohttp ingress."""
    ingest = pytest.importorskip("ingest", reason="ingest/ is not written yet")
    if not hasattr(ingest, "create_app"):
        pytest.skip("ingest.create_app does not exist yet")
    settings = load_settings(
        callback_username="u",
        callback_password="p",
        kafka_bootstrap_servers="127.0.0.1:1",
    )
    resources = rendered("prod")
    container = the_container(ingest_deployment(resources))
    annotations = ingest_deployment(resources)["spec"]["template"]["metadata"][
        "annotations"
    ]
    (ingress,) = of_kind(resources, "Ingress")
    used = {
        container["livenessProbe"]["httpGet"]["path"],
        container["readinessProbe"]["httpGet"]["path"],
        annotations["prometheus.io/path"],
    } | {
        path["path"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }

    app = ingest.create_app(settings)
    routes = {resource.canonical for resource in app.router.resources()}

    assert routes >= INGRESS_ROUTES
    assert used <= routes


def test_probe_paths_exist_in_the_processor_health_app() -> None:
    """The processors' probe and scrape paths are routes of their health server."""
    health = pytest.importorskip("processors.health", reason="no processor health app")
    deployment = processors(rendered("prod"))["inbound"]
    container = the_container(deployment)
    used = {
        container["livenessProbe"]["httpGet"]["path"],
        container["readinessProbe"]["httpGet"]["path"],
        deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"],
    }

    routes = {
        resource.canonical for resource in health.health_app([]).router.resources()
    }

    assert used <= routes


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_container_arguments_are_cli_commands(overlay: str) -> None:
    """Every application container's arguments parse with the CLI."""
    from message_events import cli

    parser_factory = getattr(cli, "_parser", None)
    if parser_factory is None:
        pytest.skip("message_events.cli has no _parser() to check arguments with")
    parser = parser_factory()

    for _, _, container in containers(rendered(overlay)):
        parsed = parser.parse_args(container["args"])
        assert callable(parsed.command)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_routes_only_the_callback_path_over_tls(overlay: str) -> None:
    """One Exact path to the ingest Service, TLS for every host, body size room."""
    resources = rendered(overlay)
    max_body = overlay_settings(overlay).max_body_bytes
    service = named(resources, "Service", "message-events-ingest")
    container = the_container(ingest_deployment(resources))

    (ingress,) = of_kind(resources, "Ingress")
    spec = ingress["spec"]
    tls_hosts = {host for tls in spec["tls"] for host in tls["hosts"]}
    paths = [p for rule in spec["rules"] for p in rule["http"]["paths"]]
    body = ingress["metadata"]["annotations"][
        "nginx.ingress.kubernetes.io/proxy-body-size"
    ]

    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    assert {rule["host"] for rule in spec["rules"]} <= tls_hosts
    assert [(p["path"], p["pathType"]) for p in paths] == [
        ("/callbacks/messaging", "Exact")
    ]
    backend = paths[0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    (port,) = service["spec"]["ports"]
    assert backend["port"]["name"] == port["name"]
    assert port["targetPort"] in {p["name"] for p in container["ports"]}
    assert re.fullmatch(r"\d+m", body)
    assert int(body[:-1]) * 1024 * 1024 >= max_body


# Rendering and checking


def test_check_finds_no_problem() -> None:
    """`make deploy-check` passes: both overlays valid against every schema."""
    problems, notes = check.check()

    assert problems == []
    assert len([n for n in notes if "resources" in n]) == len(OVERLAYS)


def test_check_reports_schema_violations() -> None:
    """The checker fails on bad custom and built-in resources, naming the field."""
    resources = rendered("prod")
    scaled = of_kind(resources, "ScaledObject")[0]
    scaled["spec"]["maxReplicaCount"] = "twelve"
    topic = of_kind(resources, "KafkaTopic")[0]
    topic["spec"]["replication"] = 3
    deployment = ingest_deployment(resources)
    the_container(deployment)["resources"]["limits"]["cpu"] = "lots"
    deployment["spec"]["replica"] = 3
    crds = check.load_crd_schemas(check.crd_dir())

    problems = check.validate_resources(
        [scaled, topic, deployment], crds, check.DEFAULT_K8S_VERSIONS
    )
    text = "\n".join(problems)

    assert "spec.maxReplicaCount: 'twelve' is not of type 'integer'" in text
    assert "'replication' was unexpected" in text
    assert "limits.cpu 'lots' is not a quantity" in text
    assert "'replica' was unexpected" in text


def test_crd_dir_is_next_to_the_repository_unless_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """CI has shared/crds beside the clone; CRD_DIR overrides it."""
    monkeypatch.delenv("CRD_DIR", raising=False)
    assert check.crd_dir() == REPO.parent / "shared" / "crds"

    monkeypatch.setenv("CRD_DIR", str(tmp_path))

    assert check.crd_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match="no CustomResourceDefinition"):
        check.load_crd_schemas(tmp_path)


def test_generated_names_carry_kustomize_hashes(tmp_path: Path) -> None:
    """Content hashes equal kustomize's own test vectors (api/krusty, api/hasher)."""
    (tmp_path / "base").mkdir()
    (tmp_path / "overlay").mkdir()
    (tmp_path / "base" / "kustomization.yaml").write_text(
        "configMapGenerator:\n- name: bob\n  literals:\n"
        "  - fruit=Indian Gooseberry\n  - year=2020\n  - crisis=true\n"
    )
    (tmp_path / "overlay" / "kustomization.yaml").write_text(
        "resources:\n- ../base\nconfigMapGenerator:\n- name: bob\n"
        "  behavior: merge\n  literals:\n  - month=12\n"
    )
    secret = {
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": "team-foo-secret-in-base"},
        "data": {"password": "c29tZXB3", "username": "YWRtaW4="},
    }

    (base,) = render(tmp_path / "base")
    (merged,) = render(tmp_path / "overlay")

    assert base["metadata"]["name"] == "bob-79t79mt227"
    assert merged["metadata"]["name"] == "bob-bk46gm59c6"
    assert merged["data"]["month"] == "12"
    assert content_hash(secret) == "bgd6bkgdm2"


def test_references_follow_the_hashed_config_map_name() -> None:
    """Pods refer to the ConfigMap by its hashed name."""
    resources = rendered("dev")
    name = app_config_map(resources)["metadata"]["name"]

    refs = {
        source["configMapRef"]["name"]
        for _, _, container in containers(resources)
        for source in container["envFrom"]
    }

    assert re.fullmatch(r"message-events-[a-z0-9]{10}", name)
    assert refs == {name}


@pytest.mark.parametrize(
    ("kustomization", "message"),
    [
        pytest.param("namePrefix: x-\n", "namePrefix", id="unknown-field"),
        pytest.param(
            "resources: [d.yaml]\npatches:\n- patch: |-\n"
            "    apiVersion: apps/v1\n    kind: Deployment\n"
            "    metadata: {name: d}\n    spec:\n      template:\n        spec:\n"
            "          tolerations: [{key: a, operator: Exists}]\n",
            "merge key",
            id="list-without-merge-key",
        ),
        pytest.param(
            "resources: [d.yaml]\npatches:\n- target: {kind: Deployment}\n"
            "  patch: |-\n    - op: replace\n"
            "      path: /spec/nothing\n      value: 1\n",
            "does not exist",
            id="json-patch-missing-path",
        ),
        pytest.param(
            "resources: [d.yaml]\nimages:\n- name: other\n  newTag: '1'\n",
            "matches no container",
            id="image-matching-nothing",
        ),
    ],
)
def test_render_refuses_what_it_does_not_implement(
    tmp_path: Path, kustomization: str, message: str
) -> None:
    """Outside its kustomize subset the renderer fails instead of guessing."""
    (tmp_path / "d.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
        "spec:\n  template:\n    spec:\n      containers: [{name: c, image: i}]\n"
        "      tolerations: [{key: b, operator: Exists}]\n"
    )
    (tmp_path / "kustomization.yaml").write_text(kustomization)

    with pytest.raises(RenderError, match=message):
        render(tmp_path)


def test_yaml_reads_only_true_and_false_as_booleans() -> None:
    """`no` and `on` stay strings, as kustomize reads them."""
    (doc,) = load_yaml_documents("a: no\nb: on\nc: true\n")

    assert doc == {"a": "no", "b": "on", "c": True}


# Image


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments)."""
    text = (REPO / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    instructions = [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    stages: list[list[tuple[str, str]]] = []
    for instruction in instructions:
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def pyproject() -> dict[str, Any]:
    """pyproject.toml, parsed."""
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_dockerfile_builds_the_wheel_in_a_builder_stage() -> None:
    """Stage one: python:3.11-slim, `pip wheel --no-deps .`, installed into a venv."""
    text = (REPO / "Dockerfile").read_text()
    builder, *_ = dockerfile_stages()
    runs = " ".join(args for op, args in builder if op == "RUN")
    copied = {
        source
        for op, args in builder
        if op == "COPY"
        for source in args.split()[:-1]
        if not source.startswith("--")
    }
    project = pyproject()
    needed = {"pyproject.toml", project["project"]["readme"]}
    needed |= set(project["tool"]["setuptools"]["packages"])

    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert builder[0] == ("FROM", "${PYTHON_IMAGE} AS builder")
    assert "pip wheel --no-deps" in runs
    assert re.search(r"/opt/venv/bin/pip install [^\n]*message_events-\*\.whl", runs)
    assert "embedded" not in runs
    assert needed <= copied, sorted(needed - copied)


def test_dockerfile_final_stage_runs_the_console_script_as_non_root() -> None:
    """Stage two: the venv only, a numeric non-root user, the declared script."""
    stages = dockerfile_stages()
    final = stages[-1]
    scripts = pyproject()["project"]["scripts"]
    entrypoint = [json.loads(args) for op, args in final if op == "ENTRYPOINT"]
    users = [args for op, args in final if op == "USER"]
    runs = " ".join(args for op, args in final if op == "RUN")

    assert len(stages) >= 2
    assert final[0][1].startswith("${PYTHON_IMAGE}")
    assert ("COPY", "--from=builder /opt/venv /opt/venv") in final
    assert entrypoint == [list(scripts)]
    assert list(scripts) == ["message-events"]
    assert len(users) == 1
    assert users[0].split(":")[0] == "10001"
    for tool in ("pip install", "apt-get install", "gcc", "build-essential"):
        assert tool not in runs


def test_dockerignore_admits_only_the_build_inputs() -> None:
    """The context is an allow-list that includes everything the wheel needs."""
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    project = pyproject()
    needed = {"pyproject.toml", project["project"]["readme"]}
    needed |= set(project["tool"]["setuptools"]["packages"])

    assert lines[0] == "*"
    assert allowed == needed


# Dashboard


def exported_samples() -> dict[str, set[str]]:
    """Each metric family of message_events.metrics and its sample names."""
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count"),
    }
    families: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                families[family.name] = {family.name + s for s in suffixes[family.type]}
    return families


def test_dashboard_queries_exported_metrics() -> None:
    """Every metric a panel queries exists; every family has a panel."""
    dashboard = json.loads((DEPLOY / "grafana" / "message-events.json").read_text())
    families = exported_samples()
    samples = set().union(*families.values())
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]

    queried = {
        name for expr in exprs for name in re.findall(r"message_events_\w+", expr)
    }

    assert len(families) == 10
    assert queried <= samples, sorted(queried - samples)
    for family, names_of_family in families.items():
        assert queried & names_of_family, f"no panel for {family}"
    assert dashboard["uid"] == "message-events"
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource"}
