"""
Check the Kubernetes manifests in deploy/ without a cluster (`make deploy-check`).

Each overlay is rendered with deploy/render.py, then every resource is checked:

- built-in kinds against the Kubernetes OpenAPI schemas that the
  kubernetes-validate package bundles, in strict mode (an unknown field is an
  error), for every version in ``K8S_VERSIONS`` (default: 1.30 and the newest
  bundled);
- custom resources (Strimzi KafkaTopic, KEDA ScaledObject and
  TriggerAuthentication) against the ``openAPIV3Schema`` of the served
  version in the CRD files of ``CRD_DIR`` (default ``<repo>/../shared/crds``),
  read at check time, with unknown fields rejected as the API server's strict
  field validation does (unless the schema preserves them);
- all resources: a valid name, a namespace, no duplicate, valid label keys
  and values, well-formed resource quantities.

What needs a cluster is not checked: the CRDs' CEL rules
(``x-kubernetes-validations``, listed when found), admission webhooks and
policies, that the images, StorageClass, Strimzi cluster and KEDA exist.

Exit status: 0 when every check passed, 1 otherwise, with one line per
problem.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]

from deploy.render import RenderError, Resource, load_yaml_documents, render

DEPLOY_DIR = Path(__file__).resolve().parent
REPO_ROOT = DEPLOY_DIR.parent
OVERLAYS = ("dev", "prod")
DEFAULT_K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())

_DNS_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUANTITY = re.compile(
    r"^[+-]?(\d+(\.\d*)?|\.\d+)"
    r"(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?(\d+(\.\d*)?|\.\d+))?$"
)
# Kinds named after DNS-1035 labels (they become DNS names or env prefixes).
_LABEL_NAMED_KINDS = frozenset({"Service", "Namespace"})


@dataclasses.dataclass(frozen=True)
class CustomSchema:
    """The schema of one served version of a custom resource."""

    api_version: str
    kind: str
    schema: dict[str, Any]
    source: Path
    cel_rules: tuple[str, ...]


def crd_dir() -> Path:
    """Where the CRD files are: ``$CRD_DIR`` or ``<repo>/../shared/crds``."""
    configured = os.environ.get("CRD_DIR")
    if configured:
        return Path(configured)
    return REPO_ROOT.parent / "shared" / "crds"


def k8s_versions() -> tuple[str, ...]:
    """Kubernetes versions to validate against: ``$K8S_VERSIONS`` or defaults."""
    configured = os.environ.get("K8S_VERSIONS", "")
    versions = tuple(v.strip() for v in configured.split(",") if v.strip())
    return versions or DEFAULT_K8S_VERSIONS


def load_crd_schemas(directory: Path) -> dict[tuple[str, str], CustomSchema]:
    """The served versions of every CRD in ``directory``, by (apiVersion, kind)."""
    if not directory.is_dir():
        msg = f"CRD directory {directory} not found (set CRD_DIR)"
        raise FileNotFoundError(msg)
    schemas: dict[tuple[str, str], CustomSchema] = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in load_yaml_documents(path.read_text()):
            if (
                not isinstance(doc, dict)
                or doc.get("kind") != "CustomResourceDefinition"
            ):
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if not version.get("served", False):
                    continue
                api_version = f"{spec['group']}/{version['name']}"
                schema = version["schema"]["openAPIV3Schema"]
                custom = CustomSchema(
                    api_version=api_version,
                    kind=spec["names"]["kind"],
                    schema=forbid_unknown_fields(schema),
                    source=path,
                    cel_rules=tuple(_cel_rules(schema)),
                )
                schemas[(api_version, custom.kind)] = custom
    if not schemas:
        msg = f"no CustomResourceDefinition in {directory}"
        raise FileNotFoundError(msg)
    return schemas


def forbid_unknown_fields(schema: Any) -> Any:
    """
    A copy of an OpenAPI schema in which objects with declared properties
    accept no other field, unless ``x-kubernetes-preserve-unknown-fields``.
    """
    if isinstance(schema, list):
        return [forbid_unknown_fields(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: forbid_unknown_fields(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields", False)
    ):
        strict["additionalProperties"] = False
    if "properties" in schema:
        # Property names are data, not schema keywords: copy them as they are.
        strict["properties"] = {
            name: forbid_unknown_fields(value)
            for name, value in schema["properties"].items()
        }
    return strict


def _cel_rules(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        for rule in schema.get("x-kubernetes-validations", []):
            yield str(rule.get("message") or rule.get("rule"))
        for value in schema.values():
            yield from _cel_rules(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _cel_rules(item)


def describe(resource: Resource) -> str:
    """``Kind namespace/name`` of a resource, for messages."""
    metadata = resource.get("metadata", {})
    namespace = metadata.get("namespace", "")
    name = metadata.get("name", "?")
    return f"{resource.get('kind')} {namespace + '/' if namespace else ''}{name}"


def validate_resources(
    resources: list[Resource],
    crds: dict[tuple[str, str], CustomSchema],
    versions: tuple[str, ...],
) -> list[str]:
    """Every problem found in one overlay's resources."""
    problems: list[str] = []
    seen: set[tuple[str, str, str, str]] = set()
    for resource in resources:
        where = describe(resource)
        key = (
            resource.get("apiVersion", ""),
            resource.get("kind", ""),
            resource.get("metadata", {}).get("namespace", ""),
            resource.get("metadata", {}).get("name", ""),
        )
        if key in seen:
            problems.append(f"{where}: declared twice")
        seen.add(key)
        problems.extend(f"{where}: {p}" for p in _metadata_problems(resource))
        problems.extend(f"{where}: {p}" for p in _quantity_problems(resource))
        custom = crds.get((key[0], key[1]))
        if custom is not None:
            problems.extend(f"{where}: {p}" for p in _custom_problems(resource, custom))
        else:
            problems.extend(
                f"{where}: {p}" for p in _builtin_problems(resource, versions)
            )
    return problems


def _metadata_problems(resource: Resource) -> Iterator[str]:
    metadata = resource.get("metadata", {})
    name = str(metadata.get("name", ""))
    pattern = (
        _DNS_LABEL if resource.get("kind") in _LABEL_NAMED_KINDS else _DNS_SUBDOMAIN
    )
    limit = 63 if resource.get("kind") in _LABEL_NAMED_KINDS else 253
    if not pattern.match(name) or len(name) > limit:
        yield f"invalid name {name!r}"
    if not metadata.get("namespace"):
        yield "no namespace: the overlay must set one"
    for key, value in metadata.get("labels", {}).items():
        prefix, _, label = str(key).rpartition("/")
        if prefix and not _DNS_SUBDOMAIN.match(prefix):
            yield f"invalid label key {key!r}"
        if not _LABEL_NAME.match(label) or len(label) > 63:
            yield f"invalid label key {key!r}"
        if (
            not isinstance(value, str)
            or not _LABEL_VALUE.match(value)
            or len(value) > 63
        ):
            yield f"invalid value {value!r} of label {key}"


def _quantity_problems(resource: Resource) -> Iterator[str]:
    spec = resource.get("spec", {})
    templates = [spec.get("template", {}).get("spec", {})]
    for pod in templates:
        for container in pod.get("initContainers", []) + pod.get("containers", []):
            for section in ("requests", "limits"):
                for name, value in (
                    container.get("resources", {}).get(section, {}).items()
                ):
                    if not _QUANTITY.match(str(value)):
                        yield (
                            f"container {container.get('name')}: "
                            f"{section}.{name} {value!r} is not a quantity"
                        )
        for volume in pod.get("volumes", []):
            size = volume.get("emptyDir", {}).get("sizeLimit")
            if size is not None and not _QUANTITY.match(str(size)):
                yield (
                    f"volume {volume.get('name')}: sizeLimit {size!r} is not a quantity"
                )
    for claim in spec.get("volumeClaimTemplates", []):
        for name, value in (
            claim.get("spec", {}).get("resources", {}).get("requests", {}).items()
        ):
            if not _QUANTITY.match(str(value)):
                claim_name = claim.get("metadata", {}).get("name")
                yield (f"volume claim {claim_name}: {name} {value!r} is not a quantity")


def _custom_problems(resource: Resource, custom: CustomSchema) -> Iterator[str]:
    validator = jsonschema.Draft7Validator(custom.schema)
    for error in sorted(validator.iter_errors(resource), key=lambda e: list(e.path)):
        path = ".".join(str(part) for part in error.path) or "(root)"
        yield f"{path}: {error.message} (schema {custom.source.name})"


def _builtin_problems(resource: Resource, versions: tuple[str, ...]) -> Iterator[str]:
    for version in versions:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path) or "(root)"
            yield f"Kubernetes {exc.version}: {path}: {exc.message}"
        except kubernetes_validate.SchemaNotFoundError as exc:
            yield f"no schema: {exc.message}, and no CRD for it in {crd_dir()}"


def check(overlays: tuple[str, ...] = OVERLAYS) -> tuple[list[str], list[str]]:
    """Render and validate the overlays: (problems, notes)."""
    crds = load_crd_schemas(crd_dir())
    versions = k8s_versions()
    problems: list[str] = []
    notes: list[str] = []
    used: set[tuple[str, str]] = set()
    for overlay in overlays:
        try:
            resources = render(DEPLOY_DIR / "overlays" / overlay)
        except RenderError as exc:
            problems.append(f"{overlay}: cannot render: {exc}")
            continue
        found = validate_resources(resources, crds, versions)
        problems.extend(f"{overlay}: {p}" for p in found)
        custom = [r for r in resources if (r["apiVersion"], r["kind"]) in crds]
        used.update((r["apiVersion"], r["kind"]) for r in custom)
        notes.append(
            f"{overlay}: {len(resources)} resources, {len(custom)} of them custom, "
            f"{'all valid' if not found else f'{len(found)} problems'} "
            f"(Kubernetes {', '.join(versions)})"
        )
    for key in sorted(used):
        for rule in crds[key].cel_rules:
            notes.append(f"not evaluated without a cluster: {key[1]} CEL rule {rule!r}")
    return problems, notes


def main() -> int:
    """Run every check, print the outcome, return the exit status."""
    try:
        problems, notes = check()
    except FileNotFoundError as exc:
        print(f"deploy-check: {exc}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"deploy-check: {note}")
    for problem in problems:
        print(f"deploy-check: ERROR {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
