"""Offline checks of otel-collector/kubernetes/: the manifests a cluster would get.

- Every core object validates against the Kubernetes 1.34 OpenAPI schemas, strict
  (unknown fields are errors), as bundled by PyPI's ``kubernetes-validate``.
- The Kubeflow objects' every field path exists in the generated API models of the
  versions we name: ``TrainJob`` (trainer.kubeflow.org/v1alpha1) in
  ``kubeflow-trainer-api`` 2.3.0 (Kubeflow Trainer v2.3.0), ``PyTorchJob``
  (kubeflow.org/v1) in ``kubeflow-training`` 1.9.4 (Training Operator v1.9), with
  core types (EnvVar, PodTemplateSpec, ...) from their own models; their pod
  parts also validate against the Kubernetes schemas.
- The collector configs inside the ConfigMaps: pipelines use defined components,
  listen ports agree with container, host and Service ports, every hop names a
  real Service, every ``${env:...}`` is set by the container, and the collector
  built from builder-config.yaml validates each one.
- The jobs send to the node's agent (status.hostIP) with the pod's identity in
  OTEL_RESOURCE_ATTRIBUTES, and run torchrun with the ``otel`` event handler.
"""

import re
import types
import typing
from importlib.metadata import version
from pathlib import Path
from typing import Any

import kubernetes_validate
import pydantic
import pytest
import yaml

from tests.support.stack import STACK, validate_collector_config

K8S = STACK / "kubernetes"
#: The Kubernetes version whose OpenAPI schemas the core objects must satisfy.
KUBERNETES_VERSION = "1.34.0"
#: Kubeflow Trainer release the TrainJob targets, and the PyPI models of its API.
TRAINER_VERSION, TRAINER_API_PACKAGE = "2.3.0", "kubeflow-trainer-api"
#: Training Operator release the PyTorchJob targets (tag v1.9.0), and the PyPI SDK
#: whose generated models carry its kubeflow.org/v1 API.
TRAINING_OPERATOR_VERSION, TRAINING_SDK, TRAINING_SDK_VERSION = "1.9", "kubeflow-training", "1.9.4"

CORE_FILES = [
    "namespace.yaml",
    "rbac.yaml",
    "backends.yaml",
    "collector-agent.yaml",
    "collector-gateway.yaml",
    "collector-sampler.yaml",
]


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _objects() -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) -> object, for the collector stack."""
    return {(d["kind"], d["metadata"]["name"]): d for f in CORE_FILES for d in _docs(f)}


def _collector_config(component: str) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(
        _objects()[("ConfigMap", f"otelcol-{component}")]["data"]["config.yaml"]
    )
    return config


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


# --- kustomization and schemas ---------------------------------------------------------


def test_kustomization_lists_the_stack() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["resources"] == CORE_FILES
    assert sorted(p.name for p in K8S.glob("*.yaml")) == sorted([*CORE_FILES, "kustomization.yaml"])
    namespace = kustomization["namespace"]
    for (kind, name), obj in _objects().items():
        if kind in {"Namespace", "ClusterRole", "ClusterRoleBinding"}:
            continue
        assert obj["metadata"]["namespace"] == namespace, (kind, name)
    assert ("Namespace", namespace) in _objects()


def test_core_objects_match_the_kubernetes_schemas() -> None:
    for (kind, name), obj in _objects().items():
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{kind}/{name}: {e.message} at {list(e.path)}")


def test_schema_validation_can_fail() -> None:
    daemonset = _objects()[("DaemonSet", "otelcol-agent")]
    bad = yaml.safe_load(yaml.safe_dump(daemonset))
    _container(bad)["ports"][0]["hostport"] = 4317  # misspelt field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


# --- Kubeflow CRDs against their generated API models ----------------------------------


def _pydantic_paths(model: type[pydantic.BaseModel], data: Any, path: str) -> list[str]:
    """Field paths of ``data`` that ``model`` (an openapi-generator pydantic model) lacks."""
    if not isinstance(data, dict):
        return []
    by_key = {(f.alias or n): f.annotation for n, f in model.model_fields.items()}
    missing = []
    for key, value in data.items():
        if key not in by_key:
            missing.append(f"{path}.{key}")
            continue
        missing += _walk_annotation(by_key[key], value, f"{path}.{key}")
    return missing


def _walk_annotation(annotation: Any, value: Any, path: str) -> list[str]:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _walk_annotation(inner[0], value, path) if len(inner) == 1 else []
    if origin is list and isinstance(value, list):
        return [
            m for i, v in enumerate(value) for m in _walk_annotation(args[0], v, f"{path}[{i}]")
        ]
    if origin is dict and isinstance(value, dict):
        return [m for k, v in value.items() for m in _walk_annotation(args[1], v, f"{path}.{k}")]
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return _pydantic_paths(annotation, value, path)
    return []


def _openapi_paths(type_name: str, data: Any, path: str) -> list[str]:
    """The same for the older openapi-generator models (``openapi_types``/``attribute_map``)."""
    import kubernetes.client.models as core
    from kubeflow.training import models as training

    if not isinstance(data, (dict, list)):
        return []
    if type_name.startswith("list[") and isinstance(data, list):
        inner = type_name[5:-1]
        return [m for i, v in enumerate(data) for m in _openapi_paths(inner, v, f"{path}[{i}]")]
    if type_name.startswith("dict(") and isinstance(data, dict):
        inner = type_name.split(",", 1)[1].strip()[:-1]
        return [m for k, v in data.items() for m in _openapi_paths(inner, v, f"{path}.{k}")]
    model = getattr(training, type_name, None) or getattr(core, type_name, None)
    if model is None or not isinstance(data, dict):
        return []
    by_key = {model.attribute_map[a]: t for a, t in model.openapi_types.items()}
    missing = []
    for key, value in data.items():
        if key not in by_key:
            missing.append(f"{path}.{key}")
        else:
            missing += _openapi_paths(by_key[key], value, f"{path}.{key}")
    return missing


def test_model_versions_are_the_ones_named() -> None:
    assert version(TRAINER_API_PACKAGE) == TRAINER_VERSION
    assert version(TRAINING_SDK) == TRAINING_SDK_VERSION
    for name in ("trainjob.yaml", "pytorchjob.yaml"):
        text = (K8S / "jobs" / name).read_text()
        expected = TRAINER_VERSION if name == "trainjob.yaml" else TRAINING_OPERATOR_VERSION
        assert f" v{expected}" in text, f"{name} names another version"


def test_trainjob_fields_exist_in_the_trainer_api() -> None:
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

    (job,) = _docs("jobs/trainjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert _pydantic_paths(TrainerV1alpha1TrainJob, job, "TrainJob") == []
    # ... and the values have the models' types.
    TrainerV1alpha1TrainJob.from_dict(job)
    # The trainer's container parts are core types: check them against Kubernetes too.
    trainer = job["spec"]["trainer"]
    container = {k: trainer[k] for k in ("image", "command", "env")} | {"name": "node"}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}
    kubernetes_validate.validate(
        pod | {"spec": {"containers": [container]}}, KUBERNETES_VERSION, strict=True
    )


def test_pytorchjob_fields_exist_in_the_training_operator_api() -> None:
    (job,) = _docs("jobs/pytorchjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    assert _openapi_paths("KubeflowOrgV1PyTorchJob", job, "PyTorchJob") == []
    for name, spec in job["spec"]["pytorchReplicaSpecs"].items():
        template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name}}
        kubernetes_validate.validate(
            template | {"template": spec["template"]}, KUBERNETES_VERSION, strict=True
        )


def test_crd_field_checks_can_fail() -> None:
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

    (trainjob,) = _docs("jobs/trainjob.yaml")
    trainjob["spec"]["trainer"]["numProcsPerNode"] = 8
    assert _pydantic_paths(TrainerV1alpha1TrainJob, trainjob, "TrainJob") == [
        "TrainJob.spec.trainer.numProcsPerNode"
    ]
    (pytorchjob,) = _docs("jobs/pytorchjob.yaml")
    pytorchjob["spec"]["elasticPolicy"]["rdzvID"] = "x"
    worker = pytorchjob["spec"]["pytorchReplicaSpecs"]["Worker"]
    worker["template"]["spec"]["containers"][0]["envs"] = []
    assert _openapi_paths("KubeflowOrgV1PyTorchJob", pytorchjob, "J") == [
        "J.spec.elasticPolicy.rdzvID",
        "J.spec.pytorchReplicaSpecs.Worker.template.spec.containers[0].envs",
    ]


# --- the jobs send to the node's agent --------------------------------------------------


def _job_containers() -> dict[str, dict[str, Any]]:
    (trainjob,) = _docs("jobs/trainjob.yaml")
    (pytorchjob,) = _docs("jobs/pytorchjob.yaml")
    worker = pytorchjob["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    return {"TrainJob": trainjob["spec"]["trainer"], "PyTorchJob": worker["containers"][0]}


@pytest.mark.parametrize("kind", ["TrainJob", "PyTorchJob"])
def test_job_exports_to_its_node_agent(kind: str) -> None:
    container = _job_containers()[kind]
    env = container["env"]
    names = [e["name"] for e in env]
    by_name = {e["name"]: e for e in env}
    # Kubernetes expands $(VAR) only for variables defined earlier in the list.
    for i, entry in enumerate(env):
        for ref in re.findall(r"\$\(([A-Z0-9_]+)\)", entry.get("value", "")):
            assert ref in names[:i], f"{entry['name']} uses $({ref}) before it is defined"

    def field(var: str) -> str:
        path: str = by_name[var]["valueFrom"]["fieldRef"]["fieldPath"]
        return path

    agent = _objects()[("DaemonSet", "otelcol-agent")]
    host_ports = {p["name"]: p["hostPort"] for p in _container(agent)["ports"] if "hostPort" in p}
    assert field("NODE_IP") == "status.hostIP"
    endpoint = by_name["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"]
    assert endpoint == f"http://$(NODE_IP):{host_ports['otlp-grpc']}"

    attributes = dict(
        kv.split("=", 1) for kv in by_name["OTEL_RESOURCE_ATTRIBUTES"]["value"].split(",")
    )
    expected = {
        "k8s.pod.name": "metadata.name",
        "k8s.namespace.name": "metadata.namespace",
        "k8s.node.name": "spec.nodeName",
    }
    for attribute, path in expected.items():
        var = re.fullmatch(r"\$\(([A-Z0-9_]+)\)", attributes[attribute])
        assert var, attributes[attribute]
        assert field(var.group(1)) == path, attribute
    # The agent's k8s_attributes matches a sender on exactly these two.
    association = _collector_config("agent")["processors"]["k8s_attributes"]["pod_association"]
    assert {s["name"] for s in association[0]["sources"]} == {
        "k8s.pod.name",
        "k8s.namespace.name",
    }

    command = container["command"]
    assert command[0] == "torchrun"
    handler = command[command.index("--event_log_handler") + 1]
    assert handler == "otel"


def test_trainjob_run_id_is_the_trainjob_name() -> None:
    """JobSet names its pods' label after the TrainJob: torchrun's run_id (--rdzv-id)."""
    env = {e["name"]: e for e in _job_containers()["TrainJob"]["env"]}
    path = env["PET_RDZV_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert path == "metadata.labels['jobset.sigs.k8s.io/jobset-name']"


# --- collector configs inside the ConfigMaps -------------------------------------------


@pytest.mark.parametrize("component", ["agent", "gateway", "sampler"])
def test_pipelines_use_defined_components(component: str) -> None:
    config = _collector_config(component)
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for name, pipeline in config["service"]["pipelines"].items():
        for kind, names in used.items():
            for item in pipeline.get(kind, []):
                assert item in config[kind], f"{component} {name}: {kind} {item} undefined"
                names.add(item)
        assert pipeline["processors"][0] == "memory_limiter", (component, name)
    for kind, names in used.items():
        assert set(config[kind]) == names, f"{component}: unused {kind}"
    assert config["service"]["extensions"] == ["health_check"]


def _env_of(workload: dict[str, Any]) -> set[str]:
    container = _container(workload)
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        names |= set(_objects()[("ConfigMap", source["configMapRef"]["name"])]["data"])
    return names


WORKLOADS = {
    "agent": ("DaemonSet", "otelcol-agent"),
    "gateway": ("Deployment", "otelcol-gateway"),
    "sampler": ("StatefulSet", "otelcol-sampler"),
}


@pytest.mark.parametrize("component", list(WORKLOADS))
def test_workload_runs_its_config(component: str) -> None:
    objects = _objects()
    workload = objects[WORKLOADS[component]]
    container = _container(workload)
    text = objects[("ConfigMap", f"otelcol-{component}")]["data"]["config.yaml"]
    config = yaml.safe_load(text)
    # The ConfigMap is mounted where --config points.
    (volume,) = workload["spec"]["template"]["spec"]["volumes"]
    assert volume["configMap"]["name"] == f"otelcol-{component}"
    (mount,) = container["volumeMounts"]
    assert mount["name"] == volume["name"]
    assert container["args"] == [f"--config={mount['mountPath']}/config.yaml"]
    # Every ${env:NAME} without a default is set in the container.
    needed = set(re.findall(r"\$\{env:([A-Z0-9_]+)\}", text))
    assert needed <= _env_of(workload), needed - _env_of(workload)
    # Listen ports are container ports; the probes ask the health_check extension.
    ports = {p["containerPort"] for p in container["ports"]}
    for protocol in config["receivers"]["otlp"]["protocols"].values():
        assert _port(protocol["endpoint"]) in ports
    health = _port(config["extensions"]["health_check"]["endpoint"])
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == health
    telemetry = config["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]
    assert telemetry["prometheus"]["port"] in ports
    # Each tier runs the collector release the repository builds and pins.
    assert container["image"].endswith(":" + _otelcol_version())


def _otelcol_version() -> str:
    versions = (STACK / "versions.env").read_text()
    match = re.search(r"^OTELCOL_VERSION=v(\S+)$", versions, re.M)
    assert match
    return match.group(1)


def _service_targets(service: dict[str, Any], port: int) -> tuple[dict[str, Any], int]:
    """The workload a Service selects, and the container port its ``port`` reaches."""
    objects = _objects()
    (spec_port,) = [p for p in service["spec"]["ports"] if p["port"] == port]
    (workload,) = [
        o
        for (kind, _), o in objects.items()
        if kind in {"DaemonSet", "Deployment", "StatefulSet"}
        and service["spec"]["selector"].items()
        <= o["spec"]["template"]["metadata"]["labels"].items()
    ]
    named = {p["name"]: p["containerPort"] for p in _container(workload)["ports"]}
    return workload, named[spec_port["targetPort"]]


def _service_for(host: str) -> dict[str, Any]:
    """``NAME.NAMESPACE.svc.cluster.local`` -> that Service."""
    name, namespace, *_ = host.split(".")
    service = _objects()[("Service", name)]
    assert service["metadata"]["namespace"] == namespace
    return service


def test_agents_reach_the_gateway_and_the_gateway_the_samplers() -> None:
    objects = _objects()
    agent = _collector_config("agent")
    gateway = _collector_config("gateway")
    sampler = _collector_config("sampler")

    # agent -> gateway Service -> gateway pods' OTLP gRPC receiver
    host, port = agent["exporters"]["otlp_grpc/gateway"]["endpoint"].rsplit(":", 1)
    workload, container_port = _service_targets(_service_for(host), int(port))
    assert (workload["kind"], workload["metadata"]["name"]) == WORKLOADS["gateway"]
    assert container_port == _port(gateway["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])
    for pipeline in agent["service"]["pipelines"].values():
        assert pipeline["exporters"] == ["otlp_grpc/gateway"]

    # gateway -> samplers: by trace id, through a headless Service's per-pod records
    balancer = gateway["exporters"]["load_balancing"]
    assert balancer["routing_key"] == "traceID"
    dns = balancer["resolver"]["dns"]
    headless = _service_for(dns["hostname"])
    assert headless["spec"]["clusterIP"] == "None"
    workload, container_port = _service_targets(headless, int(dns["port"]))
    assert (workload["kind"], workload["metadata"]["name"]) == WORKLOADS["sampler"]
    assert workload["spec"]["serviceName"] == headless["metadata"]["name"]
    assert container_port == _port(sampler["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])
    assert gateway["service"]["pipelines"]["traces"]["exporters"] == ["load_balancing"]

    # agents listen on the node: hostPort = containerPort = receiver port
    daemonset = _container(objects[WORKLOADS["agent"]])
    for protocol, name in (("grpc", "otlp-grpc"), ("http", "otlp-http")):
        (port_spec,) = [p for p in daemonset["ports"] if p["name"] == name]
        listen = _port(agent["receivers"]["otlp"]["protocols"][protocol]["endpoint"])
        assert port_spec["hostPort"] == port_spec["containerPort"] == listen


def test_sampler_keeps_errors_and_every_torchelastic_cycle() -> None:
    sampling = _collector_config("sampler")["processors"]["tail_sampling"]
    policies = {p["type"]: p for p in sampling["policies"]}
    assert policies["status_code"]["status_code"]["status_codes"] == ["ERROR"]
    run_id = policies["string_attribute"]["string_attribute"]
    assert run_id["key"] == "run_id" and run_id["enabled_regex_matching"] is True
    assert run_id["values"] == [".+"]
    # Late spans of a decided trace follow the decision: caches hold the ids.
    assert sampling["decision_cache"]["sampled_cache_size"] >= sampling["num_traces"]
    sampler = _collector_config("sampler")
    assert sampler["service"]["pipelines"]["traces"]["processors"] == [
        "memory_limiter",
        "tail_sampling",
        "batch",
    ]


def test_rbac_grants_what_k8s_attributes_reads() -> None:
    objects = _objects()
    role = objects[("ClusterRole", "otelcol-agent")]
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    for need in (("", "pods"), ("", "namespaces"), ("apps", "replicasets")):
        assert granted[need] >= {"get", "list", "watch"}, need
    binding = objects[("ClusterRoleBinding", "otelcol-agent")]
    assert binding["roleRef"]["name"] == "otelcol-agent"
    (subject,) = binding["subjects"]
    agent = objects[WORKLOADS["agent"]]
    assert agent["spec"]["template"]["spec"]["serviceAccountName"] == subject["name"]
    assert ("ServiceAccount", subject["name"]) in objects
    # Only the agents read the API: the other tiers run without a role.
    for component in ("gateway", "sampler"):
        spec = objects[WORKLOADS[component]]["spec"]["template"]["spec"]
        assert "serviceAccountName" not in spec


@pytest.mark.parametrize("component", list(WORKLOADS))
def test_collector_validates_the_configmap_config(component: str, tmp_path: Path) -> None:
    config = tmp_path / f"{component}.yaml"
    config.write_text(_objects()[("ConfigMap", f"otelcol-{component}")]["data"]["config.yaml"])
    env = dict(_objects()[("ConfigMap", "otelcol-backends")]["data"])
    env["K8S_NODE_NAME"] = "node-1"  # the downward API's value in the DaemonSet
    validate_collector_config(config, env)
