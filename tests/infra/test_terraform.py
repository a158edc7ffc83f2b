"""Static checks of infra/terraform (no terraform binary or providers here, see STACK.md):
checkov passes with every skip justified inline, and the structure the deploy relies on."""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "infra" / "terraform"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


def checkov(*args: str) -> list[dict]:
    if not CHECKOV.exists():
        pytest.fail("checkov is not installed: run `EDGESHIP_SETUP_CHECKOV=1 bash scripts/setup.sh` "
                    "(it lives in .venv-checkov because it conflicts with kfp's pins)")
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false")
    result = subprocess.run([str(CHECKOV), *args, "--skip-download", "-o", "json"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.stdout.strip(), result.stderr[-2000:]
    data = json.loads(result.stdout)
    return data if isinstance(data, list) else [data]


def read_tf(rel: str) -> str:
    return (TF / rel).read_text()


def test_checkov_passes_on_terraform_with_justified_skips():
    [report] = checkov("-d", str(TF), "--framework", "terraform")
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= 30, summary
    for skipped in report["results"]["skipped_checks"]:
        assert len((skipped["check_result"].get("suppress_comment") or "").strip()) > 20, \
            f"{skipped['check_id']} on {skipped['resource']} is skipped without a justification"


def test_checkov_passes_on_dockerfiles():
    reports = checkov("-f", str(ROOT / "Dockerfile"), "-f", str(ROOT / "Dockerfile.gpu"),
                      "--framework", "dockerfile")
    for report in reports:
        assert report["summary"]["failed"] == 0, report["results"]["failed_checks"]
        assert report["summary"]["passed"] > 10


def test_checkov_fails_a_public_unversioned_bucket(tmp_path):
    (tmp_path / "main.tf").write_text(
        'resource "google_storage_bucket" "bad" {\n  name = "x"\n  location = "US"\n}\n')
    [report] = checkov("-d", str(tmp_path), "--framework", "terraform")
    ids = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert {"CKV_GCP_29", "CKV_GCP_78", "CKV_GCP_114"} <= ids, ids


def test_env_only_composes_modules():
    main = read_tf("envs/dev/main.tf")
    assert not re.search(r'^resource\s', main, re.M), "envs/dev must compose modules, not declare resources"
    sources = re.findall(r'source\s*=\s*"([^"]+)"', main)
    assert len(sources) >= 7
    for source in sources:
        assert (TF / "envs/dev" / source / "main.tf").is_file(), source


def test_bucket_module_settings():
    tf = read_tf("modules/bucket/main.tf")
    models = tf[tf.index('resource "google_storage_bucket" "models"'):]
    for needle in ("uniform_bucket_level_access = true", 'public_access_prevention    = "enforced"',
                   "versioning {", "days_since_noncurrent_time", "num_newer_versions"):
        assert needle in models, needle


def test_function_archive_name_carries_the_source_hash():
    tf = read_tf("modules/function/main.tf")
    assert re.search(r'name\s*=\s*"functions/\$\{var\.name\}-\$\{data\.archive_file\.source\.output_sha256\}\.zip"', tf)
    assert 'event_type            = "google.cloud.storage.object.v1.finalized"' in tf
    assert 'attribute = "bucket"' in tf
    main = read_tf("envs/dev/main.tf")
    assert 'functions/register_model"' in main


def test_firestore_rules_and_indexes_are_referenced_by_path():
    main = read_tf("envs/dev/main.tf")
    assert 'rules_file   = "${local.infra_dir}/firestore.rules"' in main
    assert 'indexes_file = "${local.infra_dir}/firestore.indexes.json"' in main
    # infra_dir is envs/dev/../../.. = infra/
    assert (TF / "envs/dev/../../..").resolve() == ROOT / "infra"
    for name in ("firestore.rules", "firestore.indexes.json", "storage.rules"):
        assert (ROOT / "infra" / name).is_file(), name
    assert "storage.rules" in main


def test_least_privilege_no_owner_or_editor():
    for path in TF.rglob("*.tf"):
        text = path.read_text()
        for broad in ("roles/owner", "roles/editor", "roles/storage.admin", "roles/datastore.owner"):
            assert broad not in text, f"{path.relative_to(ROOT)} grants {broad}"


def test_required_apis_listed():
    tf = read_tf("modules/apis/main.tf")
    for api in ("aiplatform", "cloudfunctions", "eventarc", "firestore", "artifactregistry",
                "run", "cloudbuild", "cloudscheduler", "storage"):
        assert f'"{api}.googleapis.com"' in tf, api


# ------------------------------------------------------------------ structure, parsed as HCL
# The HCL parser checkov uses (python-hcl2) lives in .venv-checkov, not in the project's
# environment: parse there, hand back JSON.
HCL_TO_JSON = ("import hcl2, json, sys\n"
               "print(json.dumps({p: hcl2.load(open(p)) for p in sys.argv[1:]}))")


def _unwrap(value):
    """python-hcl2 wraps attribute values and blocks in one-element lists."""
    while isinstance(value, list) and len(value) == 1 and not isinstance(value[0], str):
        value = value[0]
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


@pytest.fixture(scope="module")
def hcl():
    python = ROOT / ".venv-checkov" / "bin" / "python"
    if not python.exists():
        pytest.fail("the HCL parser is installed with checkov: run `EDGESHIP_SETUP_CHECKOV=1 bash scripts/setup.sh`")
    paths = sorted(str(p) for p in TF.rglob("*.tf"))
    out = subprocess.run([str(python), "-c", HCL_TO_JSON, *paths], capture_output=True, text=True,
                         timeout=120, check=True)
    parsed = json.loads(out.stdout)
    return {str(Path(p).relative_to(TF)): doc for p, doc in parsed.items()}


def resources(hcl, rel: str) -> dict[tuple[str, str], dict]:
    """(type, name) -> attributes of every resource in one file."""
    out = {}
    for block in hcl[rel].get("resource", []):
        for rtype, named in block.items():
            for name, attrs in named.items():
                out[(rtype, name)] = attrs
    return out


def modules(hcl, rel: str = "envs/dev/main.tf") -> dict[str, dict]:
    out = {}
    for block in hcl[rel].get("module", []):
        for name, attrs in block.items():
            out[name] = {k: _unwrap(v) for k, v in attrs.items()}
    return out


def test_firebase_rules_are_deployed_from_the_rules_files(hcl):
    fs = resources(hcl, "modules/firestore/main.tf")
    fb = resources(hcl, "modules/firebase/main.tf")
    for res, var in ((fs[("google_firebaserules_ruleset", "firestore")], "rules_file"),
                     (fb[("google_firebaserules_ruleset", "storage")], "storage_rules_file")):
        files = _unwrap(_unwrap(res["source"])["files"])
        assert _unwrap(files["content"]) == f"${{file(var.{var})}}", files
    assert _unwrap(fs[("google_firebaserules_release", "firestore")]["name"]) == "cloud.firestore"
    release = fb[("google_firebaserules_release", "storage")]
    assert _unwrap(release["name"]) == "firebase.storage/${var.bucket}"
    assert "google_firebaserules_ruleset.storage.name" in _unwrap(release["ruleset_name"])
    # and the env points those variables at infra/*.rules
    mods = modules(hcl)
    assert mods["firestore"]["rules_file"] == "${local.infra_dir}/firestore.rules"
    assert mods["firebase"]["storage_rules_file"] == "${local.infra_dir}/storage.rules"
    assert mods["firebase"]["bucket"] == "${module.bucket.name}"


def test_firebase_project_link_storage_bucket_auth_and_app_check(hcl):
    fb = resources(hcl, "modules/firebase/main.tf")
    assert ("google_firebase_project", "this") in fb
    link = fb[("google_firebase_storage_bucket", "models")]
    assert _unwrap(link["bucket_id"]) == "${var.bucket}"
    auth = fb[("google_identity_platform_config", "auth")]
    assert _unwrap(_unwrap(_unwrap(auth["sign_in"])["anonymous"])["enabled"]) is True
    assert _unwrap(auth["autodelete_anonymous_users"]) is True
    app_check = fb[("google_firebase_app_check_service_config", "services")]
    assert _unwrap(app_check["enforcement_mode"]) == "${var.app_check_enforcement}"
    text = read_tf("modules/firebase/main.tf")
    assert '"firestore.googleapis.com", "firebasestorage.googleapis.com"' in text
    assert 'default     = "OFF"' in text  # enforcement is opt-in
    assert ("google_firebase_app_check_app_attest_config", "ios") in fb
    # every Firebase resource goes through google-beta, which envs/dev configures
    for (rtype, name), attrs in fb.items():
        assert _unwrap(attrs.get("provider")) == "${google-beta}", (rtype, name)
    versions = read_tf("envs/dev/versions.tf")
    assert 'provider "google-beta"' in versions and "user_project_override = true" in versions


def test_releases_index_and_channel_documents(hcl):
    fs = resources(hcl, "modules/firestore/main.tf")
    assert ("google_firestore_index", "this") in fs  # from infra/firestore.indexes.json (releases)
    channel = fs[("google_firestore_document", "channel")]
    collection = _unwrap(channel["collection"])
    assert "models/${split(" in collection and collection.endswith('/channels"}'), collection
    assert "fields" in json.dumps(_unwrap(channel["lifecycle"])["ignore_changes"])  # operators own them
    assert "paused" in json.dumps(channel["fields"]) and "pinned_version" in json.dumps(channel["fields"])
    assert modules(hcl)["firestore"]["channels"] in ("${var.model_name}/${var.channel}",
                                                    ["${var.model_name}/${var.channel}"])


def _resolve_locals(hcl, rel: str, text: str | None) -> str | None:
    """Substitute ${local.X} by X's expression (twice, for locals built from locals)."""
    if text is None:
        return None
    defs = {}
    for block in hcl[rel].get("locals", []):
        defs.update({k: _unwrap(v) for k, v in block.items() if isinstance(_unwrap(v), str)})
    for _ in range(3):
        for key, value in defs.items():
            value = value[2:-1] if value.startswith("${") and value.endswith("}") and value.count("${") == 1 else value
            text = text.replace("${local.%s}" % key, value)
    return text


def _bucket_grants(hcl):
    grants = []
    for (rtype, name), attrs in resources(hcl, "modules/iam/main.tf").items():
        if rtype == "google_storage_bucket_iam_member":
            cond = _unwrap(attrs.get("condition")) or {}
            grants.append({"name": name, "bucket": _unwrap(attrs["bucket"]), "role": _unwrap(attrs["role"]),
                           "member": _unwrap(attrs["member"]),
                           "condition": _resolve_locals(hcl, "modules/iam/main.tf",
                                                        _unwrap(cond.get("expression")) if cond else None)})
    return grants


def test_pipeline_cannot_delete_or_overwrite_published_models(hcl):
    grants = _bucket_grants(hcl)
    on_models = [g for g in grants if g["bucket"] == "${var.bucket}" and "pipeline" in g["member"]]
    roles = {g["role"] for g in on_models}
    assert roles == {"roles/storage.objectCreator", "roles/storage.objectViewer"}, roles
    for g in on_models:  # every grant on the model bucket is limited to models/
        assert g["condition"] and "/objects/models/" in g["condition"], g
    [creator] = [g for g in on_models if g["role"] == "roles/storage.objectCreator"]
    assert creator["condition"] == 'resource.name.startsWith(\\"projects/_/buckets/${var.bucket}/objects/models/\\")'
    [reader] = [g for g in on_models if g["role"] == "roles/storage.objectViewer"]
    # listing is checked on the bucket: granted for the models/ prefix through objectListPrefix
    assert "models/" in reader["condition"].split("storage.googleapis.com/objectListPrefix", 1)[1]
    iam = read_tf("modules/iam/main.tf")
    assert 'models_objects    = "projects/_/buckets/${var.bucket}/objects/models/"' in iam
    # nothing anywhere grants object delete on the model bucket to a service account of ours
    for g in grants:
        if g["bucket"] == "${var.bucket}":
            assert g["role"] not in ("roles/storage.objectUser", "roles/storage.objectAdmin",
                                     "roles/storage.admin", "roles/storage.legacyBucketWriter"), g


def test_pipeline_root_and_function_sources_are_in_their_own_bucket(hcl):
    mods = modules(hcl)
    assert mods["artifacts"]["source"] == "../../modules/artifacts"
    assert mods["function"]["staging_bucket"] == "${module.artifacts.name}"
    assert mods["function"]["bucket"] == "${module.bucket.name}"
    assert mods["iam"]["artifacts_bucket"] == "${module.artifacts.name}"
    assert mods["schedule"]["pipeline_root"] == "${module.artifacts.pipeline_root}"
    assert mods["schedule"]["template_uri"] == "${module.artifacts.template_uri}"
    main = read_tf("envs/dev/main.tf")
    assert "edgeship-artifacts" in main and "pipeline-root" not in main
    outputs = read_tf("envs/dev/outputs.tf")
    assert 'output "pipeline_root" { value = module.artifacts.pipeline_root }' in outputs
    art = resources(hcl, "modules/artifacts/main.tf")[("google_storage_bucket", "artifacts")]
    assert _unwrap(art["uniform_bucket_level_access"]) is True
    # the pipeline writes the pipeline root only
    writers = [g for g in _bucket_grants(hcl) if g["bucket"] == "${var.artifacts_bucket}"
               and g["role"] in ("roles/storage.objectUser", "roles/storage.objectCreator", "roles/storage.objectAdmin")]
    assert len(writers) == 1, writers
    assert writers[0]["condition"] == \
        'resource.name.startsWith(\\"projects/_/buckets/${var.artifacts_bucket}/objects/pipeline-root/\\")'



def test_function_registry_role_is_create_only_and_database_scoped(hcl):
    iam = resources(hcl, "modules/iam/main.tf")
    role = iam[("google_project_iam_custom_role", "registry_writer")]
    perms = set(_unwrap(role["permissions"]))
    assert {"datastore.entities.create", "datastore.entities.get"} <= perms
    assert not any(p.endswith((".update", ".delete")) or "import" in p or "bulkDelete" in p for p in perms), perms
    fn_grants = {name: attrs for (rtype, name), attrs in iam.items()
                 if rtype == "google_project_iam_member" and "function" in _unwrap(attrs["member"])}
    roles = {_unwrap(a["role"]) for a in fn_grants.values()}
    assert roles == {"${google_project_iam_custom_role.registry_writer.name}", "roles/logging.logWriter"}, roles
    writer = fn_grants["function_registry_writer"]
    assert _unwrap(_unwrap(writer["condition"])["expression"]) == 'resource.name == \\"${local.database}\\"'
    # no Firestore read-write role for the function, operators hold it (database-scoped)
    ops = iam[("google_project_iam_member", "operators")]
    assert _unwrap(ops["role"]) == "roles/datastore.user" and "condition" in ops
    assert modules(hcl)["iam"]["firestore_database"] == "${module.firestore.database}"


def test_firebase_apis_enabled():
    tf = read_tf("modules/apis/main.tf")
    for api in ("firebase", "firebasestorage", "firebaseappcheck", "firebaserules", "identitytoolkit"):
        assert f'"{api}.googleapis.com"' in tf, api
