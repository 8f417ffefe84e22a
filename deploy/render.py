"""
Render a kustomization as ``kubectl kustomize`` does, for the part of
kustomize that the manifests in deploy/ use.

Why this exists: CI reaches only package registries, and none of them ships a
kustomize binary that runs here (PyPI's ``pykustomize`` needs Python 3.14;
kubectl comes only inside AWS CDK's Lambda-layer packages). So the checks
render with this module, and the manifests stay within what it implements:

- ``resources``: local YAML files, and directories with a kustomization.yaml;
- ``configMapGenerator`` and ``secretGenerator`` from ``literals``, with
  ``behavior`` create, merge or replace and ``options.disableNameSuffixHash``;
  a generated name gets kustomize's content hash at the end of the build, and
  pod templates that refer to it are renamed with it;
- ``patches``: a strategic-merge patch (one document, matched on apiVersion,
  kind and name, or on a ``target``), including ``$patch: delete``; or a JSON
  6902 patch (add, replace, remove) with a ``target`` of group, version, kind
  and exact name;
- ``namespace``; ``labels`` with ``includeTemplates`` (never selectors);
  ``replicas``; ``images`` (newName, newTag, digest).

Transformers run in kustomize's order: patches, namespace, labels, replicas,
images. Anything else (another field, a ``$patch`` directive inside a
document, a list of objects whose merge key is not known here, a remote
resource) is an error rather than a silent difference: extend this module and
its tests first, or render with kustomize itself. YAML is read with only
``true``/``false`` as booleans, as kustomize reads it (not ``yes``/``on``).

Usage: ``python -m deploy.render deploy/overlays/dev`` prints the resources.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = frozenset(
    {
        "apiVersion",
        "kind",
        "resources",
        "namespace",
        "labels",
        "configMapGenerator",
        "secretGenerator",
        "patches",
        "replicas",
        "images",
    }
)

# Marks a generated ConfigMap or Secret until its name gets the content hash.
_NEEDS_HASH = "render.message-events.local/needs-hash-suffix"

# Merge keys of the lists that strategic merge patches may touch. "ports" is
# keyed by containerPort in a container and by port in a Service.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}
# Lists of scalars that Kubernetes merges instead of replacing.
_MERGED_SCALAR_LISTS = frozenset({"finalizers"})

_TEMPLATE_LABEL_KINDS = frozenset(
    {"Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job"}
)
_REPLICA_KINDS = frozenset(
    {"Deployment", "ReplicaSet", "StatefulSet", "ReplicationController"}
)
_CLUSTER_SCOPED_KINDS = frozenset(
    {
        "ClusterRole",
        "IngressClass",
        "PersistentVolume",
        "PriorityClass",
        "StorageClass",
    }
)
# Kinds whose namespace handling in kustomize goes beyond metadata.namespace.
_NAMESPACE_SPECIAL_KINDS = frozenset(
    {
        "APIService",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "MutatingWebhookConfiguration",
        "Namespace",
        "RoleBinding",
        "ValidatingWebhookConfiguration",
    }
)

# kustomize's "legacy" output order (kyaml/resid/gvk.go).
_ORDER_FIRST = (
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
)
_ORDER_LAST = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


class RenderError(Exception):
    """A kustomization that this renderer cannot render as kustomize would."""


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true and false (PyYAML also reads yes, on...)."""


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_yaml_documents(text: str) -> list[Any]:
    """Every non-empty document of a YAML stream."""
    return [doc for doc in yaml.load_all(text, Loader=_Loader) if doc is not None]


def render(directory: Path) -> list[Resource]:
    """Build the kustomization in ``directory`` into its resources."""
    resources = _build(directory.resolve())
    _add_name_hashes(resources)

    return sorted(resources, key=_sort_key)


def dump(resources: list[Resource]) -> str:
    """Resources as one YAML stream."""
    return yaml.safe_dump_all(resources, sort_keys=True, default_flow_style=False)


def content_hash(resource: Resource) -> str:
    """
    kustomize's name suffix for a ConfigMap or Secret (api/hasher/hasher.go).

    The name is always empty in the hashed JSON: kustomize looks the field up
    as the single key ``metadata/name``, which never exists. Its own test
    vectors (hasher_test.go, krusty/configmaps_test.go) agree.
    """
    if resource["kind"] == "ConfigMap":
        encoded: dict[str, Any] = {
            "kind": "ConfigMap",
            "name": "",
            "data": resource.get("data", ""),
        }
        if isinstance(resource.get("binaryData"), dict):
            encoded["binaryData"] = resource["binaryData"]
    elif resource["kind"] == "Secret":
        encoded = {
            "kind": "Secret",
            "type": resource.get("type", ""),
            "name": "",
            "data": resource.get("data", ""),
        }
        if isinstance(resource.get("stringData"), dict):
            encoded["stringData"] = resource["stringData"]
    else:
        msg = f"no content hash for kind {resource['kind']}"
        raise RenderError(msg)
    digest = hashlib.sha256(_go_json(encoded).encode()).hexdigest()

    return digest[:10].translate(str.maketrans("013ae", "ghkmt"))


def _go_json(value: Any) -> str:
    """JSON as Go's json.Marshal writes it: sorted keys, HTML escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text


def _build(directory: Path) -> list[Resource]:
    kustomization, where = _read_kustomization(directory)
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        resources.extend(_load_resource_entry(directory, entry, where))
    _check_unique(resources, where)

    for args in kustomization.get("configMapGenerator", []):
        _generate(resources, args, "ConfigMap", where)
    for args in kustomization.get("secretGenerator", []):
        _generate(resources, args, "Secret", where)

    for entry in kustomization.get("patches", []):
        resources = _apply_patch(resources, entry, directory, where)
    if "namespace" in kustomization:
        _set_namespace(resources, kustomization["namespace"], where)
    for entry in kustomization.get("labels", []):
        _add_labels(resources, entry, where)
    for entry in kustomization.get("replicas", []):
        _set_replicas(resources, entry, where)
    for entry in kustomization.get("images", []):
        _set_image(resources, entry, where)

    return resources


def _read_kustomization(directory: Path) -> tuple[dict[str, Any], str]:
    for name in KUSTOMIZATION_FILES:
        path = directory / name
        if path.is_file():
            break
    else:
        msg = f"{directory}: no kustomization.yaml"
        raise RenderError(msg)
    docs = load_yaml_documents(path.read_text())
    if len(docs) != 1 or not isinstance(docs[0], dict):
        msg = f"{path}: expected one mapping"
        raise RenderError(msg)
    kustomization: dict[str, Any] = docs[0]
    if kustomization.get("kind", "Kustomization") != "Kustomization":
        msg = f"{path}: kind {kustomization['kind']} is not supported"
        raise RenderError(msg)
    unsupported = sorted(set(kustomization) - SUPPORTED_FIELDS)
    if unsupported:
        msg = f"{path}: fields not supported by deploy/render.py: {unsupported}"
        raise RenderError(msg)

    return kustomization, str(path)


def _load_resource_entry(directory: Path, entry: str, where: str) -> list[Resource]:
    if "://" in entry or entry.startswith("git@"):
        msg = f"{where}: remote resource {entry!r} is not supported"
        raise RenderError(msg)
    path = (directory / entry).resolve()
    if path.is_dir():
        return _build(path)
    if not path.is_file():
        msg = f"{where}: resource {entry!r} not found"
        raise RenderError(msg)
    resources = load_yaml_documents(path.read_text())
    for resource in resources:
        if not isinstance(resource, dict) or not {"apiVersion", "kind"} <= set(
            resource
        ):
            msg = f"{path}: every document must be a resource with apiVersion and kind"
            raise RenderError(msg)
        if not resource.get("metadata", {}).get("name"):
            msg = f"{path}: a {resource['kind']} has no metadata.name"
            raise RenderError(msg)
    return resources


def _check_unique(resources: list[Resource], where: str) -> None:
    seen: set[tuple[str, str, str, str]] = set()
    for resource in resources:
        key = _identity(resource)
        if key in seen:
            msg = f"{where}: resource {key} is declared twice"
            raise RenderError(msg)
        seen.add(key)


def _identity(resource: Resource) -> tuple[str, str, str, str]:
    metadata = resource.get("metadata", {})
    return (
        _group(resource),
        resource["kind"],
        metadata.get("namespace", ""),
        metadata["name"],
    )


def _group(resource: Resource) -> str:
    api_version: str = resource["apiVersion"]
    return api_version.split("/")[0] if "/" in api_version else ""


def _version(resource: Resource) -> str:
    api_version: str = resource["apiVersion"]
    return api_version.split("/")[-1]


# Generators


def _generate(
    resources: list[Resource], args: dict[str, Any], kind: str, where: str
) -> None:
    allowed = {"name", "literals", "behavior", "options"} | (
        {"type"} if kind == "Secret" else set()
    )
    unsupported = sorted(set(args) - allowed)
    if unsupported:
        msg = f"{where}: {kind} generator fields not supported: {unsupported}"
        raise RenderError(msg)
    options = args.get("options", {})
    if set(options) - {"disableNameSuffixHash"}:
        msg = f"{where}: generator options not supported: {sorted(options)}"
        raise RenderError(msg)

    name = args["name"]
    data = dict(_parse_literal(item, where) for item in args.get("literals", []))
    if kind == "Secret":
        data = {key: base64.b64encode(v.encode()).decode() for key, v in data.items()}
    existing = [
        r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name
    ]
    behavior = args.get("behavior", "create")

    if behavior == "create":
        if existing:
            msg = f"{where}: {kind} {name} exists; use behavior merge or replace"
            raise RenderError(msg)
        resource: Resource = {
            "apiVersion": "v1",
            "kind": kind,
            "metadata": {"name": name},
            "data": data,
        }
        if kind == "Secret":
            resource["type"] = args.get("type", "Opaque")
        if not options.get("disableNameSuffixHash", False):
            resource["metadata"]["annotations"] = {_NEEDS_HASH: "true"}
        resources.append(resource)
        return

    if len(existing) != 1:
        msg = (
            f"{where}: behavior {behavior} needs one {kind} {name}, "
            f"found {len(existing)}"
        )
        raise RenderError(msg)
    target = existing[0]
    if behavior == "merge":
        target.setdefault("data", {}).update(data)
    elif behavior == "replace":
        target["data"] = data
    else:
        msg = f"{where}: unknown generator behavior {behavior!r}"
        raise RenderError(msg)
    if options.get("disableNameSuffixHash", False):
        target["metadata"].get("annotations", {}).pop(_NEEDS_HASH, None)


def _parse_literal(item: str, where: str) -> tuple[str, str]:
    """``key=value``, outer matching quotes removed (kustomize's api/kv)."""
    key, sep, value = item.partition("=")
    if not key or not sep:
        msg = f"{where}: invalid literal {item!r}, expected key=value"
        raise RenderError(msg)
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return key, value


# Patches


def _apply_patch(
    resources: list[Resource], entry: dict[str, Any], directory: Path, where: str
) -> list[Resource]:
    unsupported = sorted(set(entry) - {"path", "patch", "target"})
    if unsupported:
        msg = f"{where}: patch fields not supported: {unsupported}"
        raise RenderError(msg)
    if "patch" in entry:
        text = entry["patch"]
    else:
        text = (directory / entry["path"]).read_text()
    docs = load_yaml_documents(text)
    if len(docs) != 1:
        msg = f"{where}: a patch must be one YAML document"
        raise RenderError(msg)
    patch = docs[0]
    target = entry.get("target")

    if isinstance(patch, list):
        if target is None:
            msg = f"{where}: a JSON 6902 patch needs a target"
            raise RenderError(msg)
        selected = _select(resources, target, where)
        for resource in selected:
            for operation in patch:
                _json6902(resource, operation, where)
        return resources

    if not isinstance(patch, dict):
        msg = f"{where}: a patch must be a mapping or a list of operations"
        raise RenderError(msg)
    selected = (
        _select(resources, target, where)
        if target is not None
        else _select_by_name(resources, patch, where)
    )
    if patch.get("$patch") == "delete":
        doomed = {id(r) for r in selected}
        return [r for r in resources if id(r) not in doomed]
    body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind")}
    if target is not None:
        body.get("metadata", {}).pop("name", None)
    for resource in selected:
        _merge_map(resource, body, f"{where} patch of {resource['metadata']['name']}")
    return resources


def _select(
    resources: list[Resource], target: dict[str, Any], where: str
) -> list[Resource]:
    unsupported = sorted(set(target) - {"group", "version", "kind", "name"})
    if unsupported:
        msg = f"{where}: patch target fields not supported: {unsupported}"
        raise RenderError(msg)
    selected = [
        r
        for r in resources
        if target.get("kind", r["kind"]) == r["kind"]
        and target.get("name", r["metadata"]["name"]) == r["metadata"]["name"]
        and target.get("group", _group(r)) == _group(r)
        and target.get("version", _version(r)) == _version(r)
    ]
    if not selected:
        msg = f"{where}: patch target {target} matches no resource"
        raise RenderError(msg)
    return selected


def _select_by_name(
    resources: list[Resource], patch: dict[str, Any], where: str
) -> list[Resource]:
    name = patch.get("metadata", {}).get("name")
    selected = [
        r
        for r in resources
        if r["kind"] == patch.get("kind")
        and r["apiVersion"] == patch.get("apiVersion")
        and r["metadata"]["name"] == name
    ]
    if len(selected) != 1:
        msg = (
            f"{where}: patch of {patch.get('kind')} {name} matches "
            f"{len(selected)} resources, expected 1"
        )
        raise RenderError(msg)
    return selected


def _merge_map(target: dict[str, Any], patch: dict[str, Any], where: str) -> None:
    """Strategic merge of ``patch`` into ``target``, in place."""
    for key, value in patch.items():
        if key.startswith("$"):
            msg = f"{where}: directive {key} is not supported here"
            raise RenderError(msg)
        if value is None:
            target.pop(key, None)
        elif key not in target:
            _reject_directives(value, where)
            target[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(target[key], dict):
            _merge_map(target[key], value, f"{where}.{key}")
        elif isinstance(value, list) and isinstance(target[key], list):
            target[key] = _merge_list(key, target[key], value, f"{where}.{key}")
        else:
            _reject_directives(value, where)
            target[key] = copy.deepcopy(value)


def _merge_list(key: str, target: list[Any], patch: list[Any], where: str) -> list[Any]:
    if all(not isinstance(item, dict) for item in patch):
        if key in _MERGED_SCALAR_LISTS:
            msg = f"{where}: merging the scalar list {key} is not supported"
            raise RenderError(msg)
        return copy.deepcopy(patch)
    merge_key = _MERGE_KEYS.get(key)
    if key == "ports":
        merge_key = "containerPort" if "containerPort" in patch[0] else "port"
    if merge_key is None or not all(
        isinstance(item, dict) and merge_key in item for item in patch
    ):
        msg = f"{where}: list of objects without a known merge key"
        raise RenderError(msg)
    merged = list(target)
    for item in patch:
        matches = [t for t in merged if t.get(merge_key) == item[merge_key]]
        if matches:
            _merge_map(matches[0], item, f"{where}[{item[merge_key]}]")
        else:
            _reject_directives(item, where)
            merged.append(copy.deepcopy(item))
    return merged


def _reject_directives(value: Any, where: str) -> None:
    for key in _walk_keys(value):
        if key.startswith("$"):
            msg = f"{where}: directive {key} is not supported here"
            raise RenderError(msg)


def _walk_keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _walk_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_keys(item)


def _json6902(resource: Resource, operation: dict[str, Any], where: str) -> None:
    op = operation.get("op")
    tokens = [
        t.replace("~1", "/").replace("~0", "~")
        for t in operation.get("path", "").split("/")[1:]
    ]
    if op not in ("add", "replace", "remove") or not tokens:
        msg = f"{where}: JSON patch operation {operation} is not supported"
        raise RenderError(msg)
    parent: Any = resource
    for token in tokens[:-1]:
        parent = _json_child(parent, token, operation, where)
    last = tokens[-1]

    if isinstance(parent, list):
        index = len(parent) if last == "-" and op == "add" else _index(last, where)
        if op == "add":
            parent.insert(index, copy.deepcopy(operation["value"]))
            return
        if not 0 <= index < len(parent):
            msg = f"{where}: JSON patch path {operation['path']} does not exist"
            raise RenderError(msg)
        if op == "remove":
            del parent[index]
        else:
            parent[index] = copy.deepcopy(operation["value"])
        return
    if not isinstance(parent, dict):
        msg = f"{where}: JSON patch path {operation['path']} does not exist"
        raise RenderError(msg)
    if op != "add" and last not in parent:
        msg = f"{where}: JSON patch path {operation['path']} does not exist"
        raise RenderError(msg)
    if op == "remove":
        del parent[last]
    else:
        parent[last] = copy.deepcopy(operation["value"])


def _json_child(parent: Any, token: str, operation: dict[str, Any], where: str) -> Any:
    if isinstance(parent, dict) and token in parent:
        return parent[token]
    if isinstance(parent, list):
        index = _index(token, where)
        if 0 <= index < len(parent):
            return parent[index]
    msg = f"{where}: JSON patch path {operation['path']} does not exist"
    raise RenderError(msg)


def _index(token: str, where: str) -> int:
    if not token.isdigit():
        msg = f"{where}: {token!r} is not a list index"
        raise RenderError(msg)
    return int(token)


# Transformers


def _set_namespace(resources: list[Resource], namespace: str, where: str) -> None:
    for resource in resources:
        if resource["kind"] in _NAMESPACE_SPECIAL_KINDS:
            msg = f"{where}: namespace of a {resource['kind']} is not supported"
            raise RenderError(msg)
        if resource["kind"] not in _CLUSTER_SCOPED_KINDS:
            resource["metadata"]["namespace"] = namespace


def _add_labels(resources: list[Resource], entry: dict[str, Any], where: str) -> None:
    unsupported = sorted(set(entry) - {"pairs", "includeTemplates", "includeSelectors"})
    if unsupported or entry.get("includeSelectors", False):
        msg = f"{where}: labels supports only pairs and includeTemplates"
        raise RenderError(msg)
    pairs: dict[str, str] = entry.get("pairs", {})
    for resource in resources:
        resource["metadata"].setdefault("labels", {}).update(pairs)
        if entry.get("includeTemplates", False):
            for metadata in _template_metadata(resource):
                metadata.setdefault("labels", {}).update(pairs)


def _template_metadata(resource: Resource) -> Iterator[dict[str, Any]]:
    spec = resource.get("spec", {})
    if resource["kind"] in _TEMPLATE_LABEL_KINDS:
        yield spec.setdefault("template", {}).setdefault("metadata", {})
    elif resource["kind"] == "CronJob":
        job = spec.setdefault("jobTemplate", {})
        yield job.setdefault("metadata", {})
        template = job.setdefault("spec", {}).setdefault("template", {})
        yield template.setdefault("metadata", {})


def _set_replicas(resources: list[Resource], entry: dict[str, Any], where: str) -> None:
    matched = [
        r
        for r in resources
        if r["kind"] in _REPLICA_KINDS and r["metadata"]["name"] == entry["name"]
    ]
    if not matched:
        msg = f"{where}: replicas entry {entry['name']} matches no workload"
        raise RenderError(msg)
    for resource in matched:
        resource.setdefault("spec", {})["replicas"] = int(entry["count"])


def _set_image(resources: list[Resource], entry: dict[str, Any], where: str) -> None:
    unsupported = sorted(set(entry) - {"name", "newName", "newTag", "digest"})
    if unsupported or ("newTag" in entry and "digest" in entry):
        msg = f"{where}: images entry {entry} is not supported"
        raise RenderError(msg)
    matched = 0
    for container in _containers(resources):
        name, reference = _split_image(container["image"])
        if name != entry["name"]:
            continue
        matched += 1
        if "digest" in entry:
            reference = f"@{entry['digest']}"
        elif "newTag" in entry:
            reference = f":{entry['newTag']}"
        container["image"] = f"{entry.get('newName', name)}{reference}"
    if not matched:
        msg = f"{where}: images entry {entry['name']} matches no container"
        raise RenderError(msg)


def _split_image(image: str) -> tuple[str, str]:
    """Name and the rest (``:tag``, ``@digest`` or empty) of an image."""
    if "@" in image:
        name, digest = image.split("@", 1)
        return name, f"@{digest}"
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon:]
    return image, ""


def pod_specs(resource: Resource) -> Iterator[dict[str, Any]]:
    """The pod specs inside a resource: a workload's template or a Pod's spec."""
    spec = resource.get("spec", {})
    if resource["kind"] == "Pod":
        yield spec
    elif resource["kind"] == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]["spec"]
    elif isinstance(spec.get("template"), dict) and "spec" in spec["template"]:
        yield spec["template"]["spec"]


def _containers(resources: list[Resource]) -> Iterator[dict[str, Any]]:
    for resource in resources:
        for pod in pod_specs(resource):
            yield from pod.get("initContainers", [])
            yield from pod.get("containers", [])


# Names with a content hash


def _add_name_hashes(resources: list[Resource]) -> None:
    renamed: dict[tuple[str, str, str], str] = {}
    for resource in resources:
        metadata = resource["metadata"]
        annotations = metadata.get("annotations", {})
        if _NEEDS_HASH not in annotations:
            continue
        del annotations[_NEEDS_HASH]
        if not annotations:
            del metadata["annotations"]
        old = metadata["name"]
        metadata["name"] = f"{old}-{content_hash(resource)}"
        key = (resource["kind"], metadata.get("namespace", ""), old)
        renamed[key] = metadata["name"]

    for resource in resources:
        namespace = resource["metadata"].get("namespace", "")
        for pod in pod_specs(resource):
            _rename_references(pod, namespace, renamed)


def _rename_references(
    pod: dict[str, Any], namespace: str, renamed: dict[tuple[str, str, str], str]
) -> None:
    def rename(ref: dict[str, Any] | None, kind: str, field: str = "name") -> None:
        if ref is not None and (kind, namespace, ref.get(field)) in renamed:
            ref[field] = renamed[(kind, namespace, ref[field])]

    for container in pod.get("initContainers", []) + pod.get("containers", []):
        for source in container.get("envFrom", []):
            rename(source.get("configMapRef"), "ConfigMap")
            rename(source.get("secretRef"), "Secret")
        for variable in container.get("env", []):
            value_from = variable.get("valueFrom", {})
            rename(value_from.get("configMapKeyRef"), "ConfigMap")
            rename(value_from.get("secretKeyRef"), "Secret")
    for volume in pod.get("volumes", []):
        rename(volume.get("configMap"), "ConfigMap")
        rename(volume.get("secret"), "Secret", "secretName")
        for source in volume.get("projected", {}).get("sources", []):
            rename(source.get("configMap"), "ConfigMap")
            rename(source.get("secret"), "Secret")
    for pull_secret in pod.get("imagePullSecrets", []):
        rename(pull_secret, "Secret")


def _sort_key(resource: Resource) -> tuple[int, str, str, str]:
    kind = resource["kind"]
    if kind in _ORDER_FIRST:
        rank = _ORDER_FIRST.index(kind) - len(_ORDER_FIRST)
    elif kind in _ORDER_LAST:
        rank = 1 + _ORDER_LAST.index(kind)
    else:
        rank = 0
    gvk = "_".join((_group(resource) or "~G", _version(resource), kind))
    metadata = resource["metadata"]
    return rank, gvk, metadata.get("namespace", ""), metadata["name"]


def main(argv: list[str]) -> int:
    """Print the rendered resources of each kustomization directory given."""
    if not argv:
        print("usage: python -m deploy.render DIRECTORY...", file=sys.stderr)
        return 2
    try:
        for directory in argv:
            sys.stdout.write(dump(render(Path(directory))))
    except RenderError as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
