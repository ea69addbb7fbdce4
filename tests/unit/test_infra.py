"""The azd template (azure.yaml, infra/*.bicep, scripts/postdeploy.*) against the code it deploys.

Every ``.bicep`` file parses with pycep-parser. What the app needs is derived from the code,
never listed here: the setting names are :mod:`podcast.settings`' ``*_SETTING`` constants and
its sections' :meth:`setting_names`, the ``%SETTING%`` names and connections come from the
bindings of ``function_app`` (the host's own index), and the roles follow from those
bindings and from the auth modes the template sets. So a setting added to the code, or a
binding that reads a new one, fails :func:`test_the_app_settings_hold_every_setting_the_code_reads`
until the template has it. checkov itself runs in scripts/test.sh (its own venv, see
requirements-tools.txt); here each of its suppressions must carry a reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pycep import BicepParser
from pydantic_settings import BaseSettings

import function_app
from podcast import settings as settings_module
from podcast.settings import (
    DEFAULT_INPUT_CONTAINER,
    DEFAULT_OUTPUT_CONTAINER,
    DEFAULT_QUEUE,
    DocumentSettings,
    JobSettings,
    NarrationSettings,
    PipelineSettings,
    RealtimeSettings,
    RequestLimits,
    Settings,
)

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

ROLE_IDS: Mapping[str, str] = {
    # Azure's built-in role definition ids.
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Cognitive Services OpenAI User": "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}
STORAGE = "Microsoft.Storage/storageAccounts"
OPENAI = "Microsoft.CognitiveServices/accounts"
APP_INSIGHTS = "Microsoft.Insights/components"

NOT_APP_SETTINGS: Mapping[str, str] = {
    # Setting names the code reads that the template must leave unset, and why.
    settings_module.API_KEY_SETTING: "Entra ID: the app's identity has Cognitive Services OpenAI User",
    settings_module.STORAGE_SETTING: "the connection-string form; the template uses __blobServiceUri",
    settings_module.WEBSITE_HOSTNAME_SETTING: "set by App Service itself",
}
FORBIDDEN_APP_SETTINGS: Mapping[str, str] = {
    "AzureWebJobsStorage": "a connection string: shared keys are disabled",
    "FUNCTIONS_WORKER_RUNTIME": "Flex Consumption takes the runtime from functionAppConfig and rejects it",
    "FUNCTIONS_EXTENSION_VERSION": "not an app setting on Flex Consumption",
}
IDENTITY_SUFFIXES = ("__blobServiceUri", "__queueServiceUri", "__credential", "__clientId")


# --- Reading the template -------------------------------------------------------------------------


@cache
def bicep(relative: str) -> dict[str, Any]:
    """``infra/<relative>`` as pycep-parser's JSON."""
    return dict(BicepParser().parse(text=(INFRA / relative).read_text(encoding="utf-8")))


def resources_of(template: Mapping[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template.get("resources", {}).items() if r["type"] == type_}


def app_settings(template: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The properties of the Function App's ``appsettings`` config resource."""
    template = template or bicep("app/function.bicep")
    [config] = [
        r["config"]
        for r in resources_of(template, "Microsoft.Web/sites/config").values()
        if r["config"]["name"] == "appsettings"
    ]
    return dict(config["properties"])


def symbols(template: Mapping[str, Any]) -> set[str]:
    """Parameter and variable names: pycep writes a reference to one as its bare name."""
    return set(template.get("parameters", {})) | set(template.get("variables", {}))


@cache
def bindings() -> dict[str, list[dict[str, Any]]]:
    """Each function's bindings, as the host indexes them (function.json)."""
    function_app.app.functions_bindings = None  # get_functions() is not idempotent
    try:
        return {
            str(f.get_function_name()): json.loads(f.get_function_json())["bindings"]
            for f in function_app.app.get_functions()
        }
    finally:
        function_app.app.functions_bindings = None


def binding_strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for value in node.values():
            yield from binding_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from binding_strings(item)


# --- What the code needs ---------------------------------------------------------------------------


def code_setting_names() -> set[str]:
    """Every app setting name :mod:`podcast.settings` reads."""
    names = {
        value
        for name, value in vars(settings_module).items()
        if name.endswith("_SETTING") and isinstance(value, str)
    }
    for section in vars(settings_module).values():
        if (
            isinstance(section, type)
            and issubclass(section, BaseSettings)
            and hasattr(section, "setting_names")
        ):
            names.update(section.setting_names())
    return names


def binding_setting_names() -> set[str]:
    """``%NAME%`` in any binding, and the identity-based settings of each connection."""
    names: set[str] = set()
    connections = {"AzureWebJobsStorage"}  # the host's own storage
    for function_bindings in bindings().values():
        for binding in function_bindings:
            for text in binding_strings(binding):
                names.update(re.findall(r"%([A-Za-z0-9_]+)%", text))
            if binding.get("connection"):
                connections.add(binding["connection"])
    names.update(f"{connection}{suffix}" for connection in connections for suffix in IDENTITY_SUFFIXES)
    return names


def missing_settings(settings: Mapping[str, Any]) -> set[str]:
    """The settings the code needs that ``settings`` lacks."""
    required = (code_setting_names() | binding_setting_names()) - set(NOT_APP_SETTINGS)
    return required - set(settings)


def required_roles(settings: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(role, scope type) the app's identity needs, from the bindings and the auth modes."""
    needed = {
        # Identity-based host storage (keys, leases, blob receipts, poison queues).
        ("Storage Blob Data Owner", STORAGE),
        ("Storage Queue Data Contributor", STORAGE),
    }
    types = {binding["type"] for function_bindings in bindings().values() for binding in function_bindings}
    if "blobTrigger" in types:
        needed.add(("Storage Blob Data Owner", STORAGE))  # Owner: the trigger's receipts and leases
        needed.add(("Storage Queue Data Contributor", STORAGE))  # its own queue and poison queue
    if "queueTrigger" in types:
        needed.add(("Storage Queue Data Contributor", STORAGE))
    if settings_module.API_KEY_SETTING not in settings:
        needed.add(("Cognitive Services OpenAI User", OPENAI))
    if "Authorization=AAD" in str(settings.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "")):
        needed.add(("Monitoring Metrics Publisher", APP_INSIGHTS))
    return needed


def role_assignments(relative: str) -> list[dict[str, str]]:
    """Each role assignment of ``infra/<relative>``: its role name, the type of its scope, its
    principal and principal type (as written in the template)."""
    template = bicep(relative)
    variables = {name: v["value"] for name, v in template.get("variables", {}).items()}
    by_symbol = {name: r["type"] for name, r in template.get("resources", {}).items()}
    names_by_id = {role_id: name for name, role_id in ROLE_IDS.items()}
    found = []
    for resource in resources_of(template, "Microsoft.Authorization/roleAssignments").values():
        config = resource["config"]
        config = config.get("config", config)  # a conditional resource: {condition, config}
        role_ref = config["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        role_id = variables.get(role_ref, role_ref)
        found.append(
            {
                "role": names_by_id.get(role_id, role_id),
                "scope": by_symbol[config["scope"]],
                "principal": config["properties"]["principalId"],
                "principal_type": config["properties"].get("principalType", ""),
            }
        )
    return found


# --- Parsing ---------------------------------------------------------------------------------------


def test_the_template_has_its_files() -> None:
    assert {p.relative_to(INFRA).as_posix() for p in BICEP_FILES} >= {
        "main.bicep",
        "app/function.bicep",
        "app/rbac.bicep",
        "app/openai-access.bicep",
        "core/storage.bicep",
        "core/monitoring.bicep",
        "core/openai.bicep",
        "core/eventgrid.bicep",
        "core/identity.bicep",
    }


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_every_bicep_file_parses(path: Path) -> None:
    parsed = BicepParser().parse(text=path.read_text(encoding="utf-8"))
    assert parsed.get("resources") or parsed.get("modules")


def test_the_parser_refuses_broken_bicep() -> None:
    broken = (
        (INFRA / "core" / "identity.bicep")
        .read_text(encoding="utf-8")
        .replace("location: location", "location")
    )
    with pytest.raises(Exception, match=r"(?i)unexpected|expected"):
        BicepParser().parse(text=broken)


def test_every_module_file_exists() -> None:
    for relative in ("main.bicep",):
        for module in bicep(relative).get("modules", {}).values():
            assert (INFRA / module["detail"]["path"]).is_file(), module["detail"]["path"]


def test_every_checkov_suppression_gives_its_reason() -> None:
    skips = [
        (path.name, match)
        for path in BICEP_FILES
        for match in re.finditer(r"checkov:skip=([A-Z0-9_]+)(.*)", path.read_text(encoding="utf-8"))
    ]
    assert skips, "no suppressions found: has the comment syntax changed?"
    for name, match in skips:
        reason = match.group(2).lstrip(":").strip()
        assert len(reason) >= 20, f"{name}: {match.group(1)} is suppressed without a reason"


# --- App settings ----------------------------------------------------------------------------------


def test_the_app_settings_hold_every_setting_the_code_reads() -> None:
    assert missing_settings(app_settings()) == set()


def test_a_missing_setting_is_caught() -> None:
    settings = app_settings()
    for name in ("NARRATION_INPUT_CONTAINER", "NARRATION_QUEUE", "NARRATION_STORAGE__clientId"):
        assert missing_settings({k: v for k, v in settings.items() if k != name}) == {name}


def test_the_required_settings_include_what_the_bindings_read() -> None:
    names = binding_setting_names()
    assert {"NARRATION_QUEUE", "NARRATION_INPUT_CONTAINER"} <= names
    assert {"AzureWebJobsStorage__credential", "NARRATION_STORAGE__queueServiceUri"} <= names


@pytest.mark.parametrize("name", sorted(NOT_APP_SETTINGS) + sorted(FORBIDDEN_APP_SETTINGS))
def test_no_key_or_connection_string_is_set(name: str) -> None:
    assert name not in app_settings(), NOT_APP_SETTINGS.get(name) or FORBIDDEN_APP_SETTINGS[name]


def test_every_connection_uses_the_user_assigned_identity() -> None:
    settings = app_settings()
    connections = {name.split("__")[0] for name in binding_setting_names() if "__" in name}
    assert connections == {"AzureWebJobsStorage", "NARRATION_STORAGE"}
    for connection in connections:
        # Without __credential=managedidentity the host ignores __clientId.
        assert settings[f"{connection}__credential"] == "managedidentity"
        assert settings[f"{connection}__clientId"] == "identityClientId"
        assert settings[f"{connection}__blobServiceUri"] == "blobServiceUri"
        assert settings[f"{connection}__queueServiceUri"] == "queueServiceUri"
    assert settings[settings_module.CLIENT_ID_SETTING] == "identityClientId"
    assert (
        settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
        == "ClientId=${identityClientId};Authorization=AAD"
    )


def literal_environment() -> dict[str, str]:
    """The app settings as the app would see them: literal values as written, references to
    the container and queue parameters resolved through main.bicep to their defaults, the
    endpoints and identity placeholders."""
    main = bicep("main.bicep")
    function = bicep("app/function.bicep")
    passed = main["modules"]["api"]["config"]["params"]
    env: dict[str, str] = {}
    for name, value in app_settings(function).items():
        if not isinstance(value, str):
            continue
        if value not in symbols(function):
            env[name] = value
            continue
        source = passed.get(value)
        if isinstance(source, str) and "default" in main["parameters"].get(source, {}):
            env[name] = str(main["parameters"][source]["default"])
    env.update(
        {
            settings_module.ENDPOINT_SETTING: "https://oai-example.openai.azure.com/",
            "NARRATION_STORAGE__blobServiceUri": "https://stexample.blob.core.windows.net",
            "NARRATION_STORAGE__queueServiceUri": "https://stexample.queue.core.windows.net",
            "NARRATION_STORAGE__clientId": "00000000-0000-0000-0000-000000000000",
        }
    )
    return env


def test_the_app_reads_the_template_settings_without_a_problem_and_at_the_code_defaults() -> None:
    env = literal_environment()
    read = Settings.from_env(env)
    # Each section raises its ConfigurationError (naming the setting) if a value is malformed.
    assert read.storage.auth_mode == "managed_identity"
    assert read.realtime.auth_mode == "managed_identity"
    assert (read.realtime.deployment, read.realtime.response_timeout_seconds, read.realtime.max_retries) == (
        RealtimeSettings.model_fields["deployment"].default,
        RealtimeSettings.model_fields["response_timeout_seconds"].default,
        RealtimeSettings.model_fields["max_retries"].default,
    )
    assert read.limits == RequestLimits()
    assert read.narration == NarrationSettings()
    assert read.pipeline == PipelineSettings()
    assert read.documents == DocumentSettings()
    assert read.jobs == JobSettings(
        jobs_container=JobSettings.default_jobs_container(DEFAULT_OUTPUT_CONTAINER)
    )
    assert (read.storage.output_container, read.storage.input_container) == (
        DEFAULT_OUTPUT_CONTAINER,
        DEFAULT_INPUT_CONTAINER,
    )
    assert read.jobs.queue_name == DEFAULT_QUEUE


def test_the_retry_settings_match_host_json() -> None:
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))["extensions"]
    settings = app_settings()
    assert int(settings[settings_module.MAX_DEQUEUE_SETTING]) == host["queues"]["maxDequeueCount"]
    assert int(settings[settings_module.DOCUMENT_ATTEMPTS_SETTING]) == host["blobs"]["poisonBlobThreshold"]


# --- Roles -----------------------------------------------------------------------------------------


def test_the_identity_has_exactly_the_roles_the_code_needs() -> None:
    settings = app_settings()
    assigned = role_assignments("app/rbac.bicep") + role_assignments("app/openai-access.bicep")
    app_roles = {(a["role"], a["scope"]) for a in assigned if a["principal"] == "principalId"}
    assert app_roles == required_roles(settings)
    for assignment in assigned:
        if assignment["principal"] == "principalId":
            assert assignment["principal_type"] == "ServicePrincipal"


def test_a_missing_role_is_caught() -> None:
    needed = required_roles(app_settings())
    assert ("Cognitive Services OpenAI User", OPENAI) in needed
    assert ("Monitoring Metrics Publisher", APP_INSIGHTS) in needed
    with_key = {**app_settings(), settings_module.API_KEY_SETTING: "a key"}
    assert ("Cognitive Services OpenAI User", OPENAI) not in required_roles(with_key)


def test_the_role_modules_get_the_app_identity() -> None:
    modules = bicep("main.bicep")["modules"]
    for name in ("rbac", "openAiAccess"):
        principal = modules[name]["config"]["params"]["principalId"]
        assert json.dumps(principal).count('"identity"') == 1
        assert '"principalId"' in json.dumps(principal)


# --- Resources -------------------------------------------------------------------------------------


def test_storage_has_shared_keys_disabled_and_every_container_and_queue() -> None:
    [account] = resources_of(bicep("core/storage.bicep"), STORAGE).values()
    properties = account["config"]["properties"]
    assert properties["allowSharedKeyAccess"] is False
    assert properties["allowBlobPublicAccess"] is False
    main = bicep("main.bicep")
    params = main["modules"]["storage"]["config"]["params"]
    assert set(params["containerNames"]) == {
        "deploymentContainerName",
        "outputContainerName",
        "inputContainerName",
        "jobsContainerName",
    }
    assert params["queueNames"] == ["jobsQueueName"]
    defaults = {name: p.get("default") for name, p in main["parameters"].items()}
    assert (defaults["outputContainerName"], defaults["inputContainerName"], defaults["jobsQueueName"]) == (
        DEFAULT_OUTPUT_CONTAINER,
        DEFAULT_INPUT_CONTAINER,
        DEFAULT_QUEUE,
    )
    assert defaults["jobsContainerName"] == JobSettings.default_jobs_container(DEFAULT_OUTPUT_CONTAINER)


def test_the_function_app_is_flex_consumption_python_with_the_user_assigned_identity() -> None:
    function = bicep("app/function.bicep")
    [plan] = resources_of(function, "Microsoft.Web/serverfarms").values()
    assert plan["config"]["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    [site] = resources_of(function, "Microsoft.Web/sites").values()
    config = site["config"]
    assert config["identity"]["type"] == "UserAssigned"
    app_config = config["properties"]["functionAppConfig"]
    assert app_config["runtime"] == {"name": "python", "version": "pythonVersion"}
    assert app_config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert config["properties"]["httpsOnly"] is True
    python = bicep("main.bicep")["parameters"]["pythonVersion"]
    allowed = next(d["argument"] for d in python["decorators"] if d["type"] == "allowed")
    assert (python["default"], allowed) == ("3.12", ["3.11", "3.12", "3.13"])


def test_application_insights_accepts_entra_id_only() -> None:
    [component] = resources_of(bicep("core/monitoring.bicep"), APP_INSIGHTS).values()
    assert component["config"]["properties"]["DisableLocalAuth"] is True
    assert component["config"]["properties"]["WorkspaceResourceId"]


def test_openai_is_entra_only_with_a_gpt_realtime_mini_deployment() -> None:
    openai = bicep("core/openai.bicep")
    [account] = resources_of(openai, OPENAI).values()
    assert account["config"]["properties"]["disableLocalAuth"] is True
    assert account["config"]["properties"]["customSubDomainName"]
    [deployment] = resources_of(openai, "Microsoft.CognitiveServices/accounts/deployments").values()
    assert deployment["config"]["properties"]["model"]["name"] == settings_module.DEFAULT_DEPLOYMENT
    main = bicep("main.bicep")["parameters"]
    assert main["openAiDeploymentName"]["default"] == settings_module.DEFAULT_DEPLOYMENT
    assert "existingOpenAiAccountName" in main


def test_the_event_grid_system_topic_is_on_the_storage_account() -> None:
    [topic] = resources_of(bicep("core/eventgrid.bicep"), "Microsoft.EventGrid/systemTopics").values()
    assert topic["config"]["properties"]["topicType"] == "Microsoft.Storage.StorageAccounts"


# --- azure.yaml and the postdeploy hook ------------------------------------------------------------


def test_azure_yaml_deploys_this_folder_as_a_python_function_and_runs_the_hook() -> None:
    config = yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))
    [service] = config["services"].values()
    assert (service["project"], service["language"], service["host"]) == (".", "python", "function")
    hook = config["hooks"]["postdeploy"]
    assert (hook["posix"]["shell"], hook["windows"]["shell"]) == ("sh", "pwsh")
    for platform in ("posix", "windows"):
        assert (ROOT / hook[platform]["run"]).is_file()
    assert (ROOT / (config["infra"]["path"]) / f"{config['infra']['module']}.bicep").is_file()
    [tagged] = list(resources_of(bicep("app/function.bicep"), "Microsoft.Web/sites").values())
    assert bicep("main.bicep")["modules"]["api"]["config"]["params"]["serviceName"] in config["services"]
    assert tagged["config"]["tags"]


def test_the_hook_subscribes_the_blob_trigger_the_app_has() -> None:
    blob_functions = {
        name
        for name, function_bindings in bindings().items()
        for b in function_bindings
        if b["type"] == "blobTrigger"
    }
    outputs = bicep("main.bicep")["outputs"]
    assert {outputs["BLOB_TRIGGER_FUNCTION_NAME"]["value"]} == blob_functions
    for trigger in (b for f in bindings().values() for b in f if b["type"] == "blobTrigger"):
        assert trigger["source"] == "EventGrid"
        container_setting = re.fullmatch(r"%([A-Z_]+)%/.*", trigger["path"])
        assert container_setting is not None
        assert container_setting.group(1) in outputs, "the hook needs the input container's name"


@pytest.mark.parametrize(
    ("script", "pattern"),
    [("postdeploy.sh", r"setting ([A-Z_]+)\)"), ("postdeploy.ps1", r"Get-Setting '([A-Z_]+)'")],
)
def test_the_hook_reads_only_outputs_of_the_template(script: str, pattern: str) -> None:
    text = (ROOT / "scripts" / script).read_text(encoding="utf-8")
    read = set(re.findall(pattern, text))
    assert read >= {"AZURE_FUNCTION_APP_NAME", "EVENT_GRID_SYSTEM_TOPIC_NAME", "NARRATION_INPUT_CONTAINER"}
    assert read <= set(bicep("main.bicep")["outputs"])
    assert "defaultHostName" in text
    assert "systemKeys.blobs_extension" in text
    assert "Microsoft.Storage.BlobCreated" in text
    assert "/blobServices/default/containers/" in text


# --- host.json -------------------------------------------------------------------------------------


def test_host_json_bounds_the_realtime_sessions_of_one_instance() -> None:
    queues = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))["extensions"]["queues"]
    # The host runs up to batchSize + newBatchThreshold queued jobs at once per instance, and
    # each opens up to NARRATION_CONCURRENCY Realtime sessions.
    jobs_at_once = queues["batchSize"] + queues["newBatchThreshold"]
    assert jobs_at_once * NarrationSettings().concurrency <= 8
    assert queues["newBatchThreshold"] >= 1, "with 0 a long job would hold back the next batch"
    hours, minutes, seconds = (float(part) for part in queues["visibilityTimeout"].split(":"))
    assert hours * 3600 + minutes * 60 + seconds >= 30
