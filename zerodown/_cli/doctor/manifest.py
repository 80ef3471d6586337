"""A Kubernetes manifest as ``zerodown doctor`` reads it: the Deployment's pod, its
container and the PodDisruptionBudgets, every value with the line it is on."""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # PyYAML is the doctor's own extra: imported when a manifest is read
    import yaml

Path_ = tuple[str | int, ...]
SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh"})


class ManifestError(Exception):
    """The manifest cannot be read as a Deployment; the message says why."""


@dataclass(frozen=True, slots=True)
class Located:
    """A YAML document's values and the line of each (by its path of keys and indexes)."""

    value: dict[str, Any]
    lines: dict[Path_, int]
    file: str

    def get(self, *path: str | int, default: Any = None) -> Any:
        value: Any = self.value
        for key in path:
            if isinstance(key, int):
                if not isinstance(value, list) or key >= len(value):
                    return default
            elif not isinstance(value, dict) or key not in value:
                return default
            value = value[key]
        return value

    def line(self, *path: str | int) -> int:
        """The line of ``path``, else of the nearest parent the manifest has."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return 1


@dataclass(frozen=True, slots=True)
class Manifest:
    file: str
    deployment: Located
    #: The path of the one container, inside the Deployment.
    container: Path_
    budgets: list[Located]

    @property
    def pod(self) -> Path_:
        return ("spec", "template", "spec")

    def env(self) -> dict[str, str]:
        """The container's literal environment (``valueFrom`` entries are not known here)."""
        items = self.deployment.get(*self.container, "env", default=[]) or []
        return {
            str(item["name"]): str(item["value"])
            for item in items
            if isinstance(item, dict) and "name" in item and "value" in item
        }

    def env_line(self, name: str) -> int:
        items = self.deployment.get(*self.container, "env", default=[]) or []
        for index, item in enumerate(items):
            if isinstance(item, dict) and item.get("name") == name:
                return self.deployment.line(*self.container, "env", index)
        return self.deployment.line(*self.container, "env")


@dataclass(frozen=True, slots=True)
class PreStopHook:
    """The container's preStop hook: seconds it sleeps, or the path it GETs, and its line."""

    sleep: float
    http_path: str | None
    line: int


def pre_stop_hook(manifest: Manifest) -> PreStopHook | None:
    """The preStop hook: ``sleep``, ``exec`` of ``sleep N`` (also through a shell), or
    ``httpGet``; None without one."""
    d, c = manifest.deployment, manifest.container
    hook = d.get(*c, "lifecycle", "preStop")
    if not isinstance(hook, dict):
        return None
    line = d.line(*c, "lifecycle", "preStop")
    if "sleep" in hook:
        return PreStopHook(float((hook["sleep"] or {}).get("seconds", 0)), None, line)
    words = [str(part) for part in (hook.get("exec") or {}).get("command", [])]
    if words and Path(words[0]).name in SHELLS:
        words = shlex.split(words[-1])
    if len(words) >= 2 and Path(words[0]).name == "sleep":
        try:
            return PreStopHook(float(words[1]), None, line)
        except ValueError:
            return PreStopHook(0.0, None, line)
    if "httpGet" in hook:
        return PreStopHook(0.0, str((hook["httpGet"] or {}).get("path", "/")), line)
    return None


def rollout_pods(value: Any, replicas: int, *, up: bool) -> int:
    """A Deployment's maxSurge (``up``: rounded up) or maxUnavailable (rounded down) as a
    number of pods, as Kubernetes reads a count or a percentage of ``replicas``."""
    if isinstance(value, str) and value.endswith("%"):
        share = float(value[:-1]) / 100 * replicas
        return math.ceil(share) if up else math.floor(share)
    return int(value)


def read_manifest(path: Path, container: str | None = None) -> Manifest:
    """The Deployment of ``path`` (one per file), and the container named ``container``
    (the only one, or the first when not named)."""
    try:
        import yaml
    except ImportError:
        raise ManifestError(
            "reading manifests needs PyYAML: pip install 'zerodown[doctor]'"
        ) from None
    try:
        text = path.read_text()
        nodes = list(yaml.compose_all(text))
    except (OSError, yaml.YAMLError) as error:
        raise ManifestError(f"{path}: cannot read it as YAML: {error}") from None
    documents = [_located(node, str(path)) for node in nodes if node is not None]
    deployments = [d for d in documents if d.get("kind") in ("Deployment", "StatefulSet")]
    if len(deployments) != 1:
        raise ManifestError(
            f"{path}: expected one Deployment, found {len(deployments)}; give one file per "
            "Deployment"
        )
    (deployment,) = deployments
    containers = deployment.get("spec", "template", "spec", "containers", default=[]) or []
    names = [str(c.get("name")) for c in containers if isinstance(c, dict)]
    if not names:
        raise ManifestError(f"{path}: the Deployment has no containers")
    index = names.index(container) if container in names else 0
    if container is not None and container not in names:
        raise ManifestError(f"{path}: no container {container!r}; it has {', '.join(names)}")
    budgets = [d for d in documents if d.get("kind") == "PodDisruptionBudget"]
    return Manifest(
        str(path), deployment, ("spec", "template", "spec", "containers", index), budgets
    )


def _located(node: yaml.Node, file: str) -> Located:
    import yaml

    lines: dict[Path_, int] = {}

    def walk(node: yaml.Node, path: Path_) -> Any:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            result = {}
            for key, value in node.value:
                name = str(yaml.safe_load(yaml.serialize(key)))
                result[name] = walk(value, (*path, name))
                # The key's line, not its value's: a value may start on the next line.
                lines[(*path, name)] = key.start_mark.line + 1
            return result
        if isinstance(node, yaml.SequenceNode):
            return [walk(item, (*path, index)) for index, item in enumerate(node.value)]
        return yaml.safe_load(yaml.serialize(node))

    value = walk(node, ())
    if not isinstance(value, dict):
        raise ManifestError(f"{file}: a document is not a mapping")
    return Located(value, lines, file)
