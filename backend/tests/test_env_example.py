"""``.env.example`` lists every variable the services' settings classes read, and nothing that no
one reads (DESIGN.md, Configuration: one ``.env``, ``.env.example`` lists all)."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = REPO_ROOT / ".env.example"
AIRFLOW_DIR = REPO_ROOT / "airflow"
if str(AIRFLOW_DIR) not in sys.path:  # traffic_pipeline without `pip install -e airflow`
    sys.path.insert(0, str(AIRFLOW_DIR))

# One settings class per service: (module, class).
SETTINGS_CLASSES = [
    ("backend.settings", "Settings"),
    ("backend.services.redis_consumer", "ConsumerSettings"),
    ("traffic_pipeline.config", "PipelineSettings"),
    ("spark.streaming.settings", "SparkSettings"),
]

# Variables of .env.example that no settings class reads, and who reads them instead (the test
# checks that the file named does).
READ_ELSEWHERE = {
    "AIRFLOW_HOME": "airflow/run_standalone.sh",  # Airflow's home (also read by Airflow itself)
    "AIRFLOW_PORT": "airflow/run_standalone.sh",  # the api-server's port
    "POSTGRES_PASSWORD": "docker-compose.yml",  # compose's PostgreSQL (the URLs carry it)
}
# Prefixes of variables passed to a tool as its own configuration: AIRFLOW__SECTION__KEY is
# Airflow's configuration (read by Airflow, e.g. AIRFLOW__DATABASE__SQL_ALCHEMY_CONN).
TOOL_PREFIXES = ("AIRFLOW__",)


def example_variables() -> dict[str, str]:
    """``NAME=value`` lines of .env.example (comments and blank lines skipped)."""
    names: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        assert match, f".env.example: not a NAME=value line: {line!r}"
        assert match.group(1) not in names, f".env.example lists {match.group(1)} twice"
        names[match.group(1)] = match.group(2)
    return names


def settings_class(module: str, name: str) -> type[BaseSettings]:
    """The settings class; a missing one, or one that is not pydantic-settings, fails the test
    (its variables could not be checked)."""
    cls = getattr(importlib.import_module(module), name, None)
    assert isinstance(cls, type) and issubclass(cls, BaseSettings), (
        f"{module}.{name} is missing or not a pydantic-settings class: its variables cannot be checked"
    )
    return cls


def env_names(cls: type[BaseSettings]) -> set[str]:
    """The environment variables ``cls`` reads: its fields (or their aliases), upper case."""
    prefix = cls.model_config.get("env_prefix", "") or ""
    names: set[str] = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices if isinstance(choice, str))
        else:
            names.add((prefix + (field.alias or field_name)).upper())
    return names


@pytest.mark.parametrize(("module", "name"), SETTINGS_CLASSES)
def test_every_setting_is_in_env_example(module, name):
    cls = settings_class(module, name)
    missing = sorted(env_names(cls) - set(example_variables()))
    assert not missing, f".env.example lacks {missing}, read by {module}.{name}"


def test_every_env_example_variable_is_read():
    classes = [settings_class(m, n) for m, n in SETTINGS_CLASSES]
    read = set().union(*(env_names(cls) for cls in classes))
    unread = sorted(
        name
        for name in example_variables()
        if name not in read and name not in READ_ELSEWHERE and not name.startswith(TOOL_PREFIXES)
    )
    assert not unread, f".env.example lists {unread}, which no settings class reads"


@pytest.mark.parametrize(("name", "path"), sorted(READ_ELSEWHERE.items()))
def test_variables_read_elsewhere_are_read_there(name, path):
    assert name in example_variables()
    source = (REPO_ROOT / path).read_text()
    assert re.search(rf"\$\{{?{name}\b", source), f"{path} does not read ${name}"


def test_a_missing_settings_class_fails_rather_than_skips():
    with pytest.raises(AssertionError, match="missing or not a pydantic-settings class"):
        settings_class("backend.settings", "NoSuchSettings")
    with pytest.raises(AssertionError, match="not a pydantic-settings class"):
        settings_class("backend.settings", "Path")  # a class, not settings
