# Service accounts and their grants, least privilege (docs/deploy.md, "Who can publish"):
#  - pipeline (edgeship-pipeline): runs Vertex AI pipeline jobs and is the ONLY publisher. On the
#    model bucket it may create objects under models/ and read them - no delete, no overwrite
#    (roles/storage.objectCreator + objectViewer, both with an IAM condition on the models/
#    prefix). Overwriting an object needs storage.objects.delete, which it does not hold, so a
#    published version is immutable even against the publisher itself. Its scratch space (pipeline
#    root) is the artifacts bucket, where it may write under pipeline-root/ only.
#  - function (edgeship-register): the register_model Cloud Function. Reads models/ in the model
#    bucket; in Firestore it may only CREATE and read documents (custom role, see below), so it
#    cannot modify or delete anything - not a version, not a release, not an operator's channel
#    document - and only in the registry database (IAM condition on the database name).
#  - operators (var.operator_members, e.g. a release-managers group): roles/datastore.user on the
#    registry database: they run `edgeship channel pause|rollback|resume`, which writes
#    models/{model}/channels/{channel}.
#  - trigger (edgeship-trigger): the identity Eventarc uses to invoke the function.
#  - scheduler (edgeship-scheduler): Cloud Scheduler's identity to start pipeline jobs.
# Bucket-scoped grants are made on the buckets, not on the project.
#
# Firestore IAM is database-wide: IAM conditions can name a database
# (resource.name == "projects/P/databases/D"), not a collection or a document. So the function's
# write access is narrowed by *verb* instead of by path: it holds datastore.entities.create but
# not .update or .delete. Firestore checks a commit whose write has the exists=false
# precondition (what `DocumentReference.create()` sends) against datastore.entities.create only;
# a `set()` or `update()` needs datastore.entities.update as well, and is refused. The one thing
# create-only still allows - creating a channel document that does not exist yet - is closed by
# modules/firestore, which creates the control document of every channel in var.channels.
variable "project_id" { type = string }
variable "bucket" {
  type        = string
  description = "The model bucket (published versions under models/)."
}
variable "artifacts_bucket" {
  type        = string
  description = "The artifacts bucket (pipeline-root/, pipelines/, functions/)."
}
variable "firestore_database" {
  type        = string
  default     = "(default)"
  description = "The registry's Firestore database id (IAM conditions name it)."
}
variable "operator_members" {
  type        = list(string)
  default     = []
  description = "Principals who run `edgeship channel ...` (e.g. group:release-managers@example.com)."
}
variable "enable_data_write_audit_logs" {
  type        = bool
  default     = true
  description = "Record who wrote each object and document (Data Access DATA_WRITE logs for Cloud Storage and Firestore)."
}

locals {
  models_objects    = "projects/_/buckets/${var.bucket}/objects/models/"
  artifacts_objects = "projects/_/buckets/${var.artifacts_bucket}/objects/"
  database          = "projects/${var.project_id}/databases/${var.firestore_database}"
  # objects.list is checked on the bucket, not on an object: a resource.name condition alone
  # never grants it. The list request's prefix is the objectListPrefix API attribute.
  models_read_condition = join(" || ", [
    "resource.name.startsWith(\"${local.models_objects}\")",
    "api.getAttribute(\"storage.googleapis.com/objectListPrefix\", \"\").startsWith(\"models/\")",
  ])
}

resource "google_service_account" "pipeline" {
  project      = var.project_id
  account_id   = "edgeship-pipeline"
  display_name = "edgeship pipeline (Vertex AI Pipelines) - the only publisher of models/"
}

resource "google_service_account" "function" {
  project      = var.project_id
  account_id   = "edgeship-register"
  display_name = "edgeship register_model Cloud Function"
}

resource "google_service_account" "trigger" {
  project      = var.project_id
  account_id   = "edgeship-trigger"
  display_name = "edgeship Eventarc trigger"
}

resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "edgeship-scheduler"
  display_name = "edgeship Cloud Scheduler (starts pipeline jobs)"
}

# ------------------------------------------------------------------------------ custom roles

# Create and read documents; no update, no delete (see the header).
resource "google_project_iam_custom_role" "registry_writer" {
  project     = var.project_id
  role_id     = "edgeshipRegistryWriter"
  title       = "edgeship registry writer (create-only)"
  description = "Create and read Firestore documents; cannot update or delete any. For register_model."
  permissions = [
    "datastore.databases.get", # begin/rollback a transaction (Firestore's meaning of .get)
    "datastore.databases.getMetadata",
    "datastore.entities.create",
    "datastore.entities.get",
  ]
}

# Vertex AI checks the pipeline root's bucket (storage.buckets.get) before it starts a job.
resource "google_project_iam_custom_role" "bucket_metadata_reader" {
  project     = var.project_id
  role_id     = "edgeshipBucketMetadataReader"
  title       = "edgeship bucket metadata reader"
  description = "storage.buckets.get only: lets Vertex AI validate the pipeline root bucket."
  permissions = ["storage.buckets.get"]
}

# ------------------------------------------------------------------------------ pipeline

resource "google_project_iam_member" "pipeline" {
  for_each = toset(["roles/aiplatform.user", "roles/logging.logWriter"])
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.pipeline.email}"
}

# Reads the registry (the channel's champion for the gate), in the registry database only.
resource "google_project_iam_member" "pipeline_registry_reader" {
  project = var.project_id
  role    = "roles/datastore.viewer"
  member  = "serviceAccount:${google_service_account.pipeline.email}"
  condition {
    title       = "registry-database-only"
    description = "Only the edgeship registry database"
    expression  = "resource.name == \"${local.database}\""
  }
}

# The publisher grant: create objects under models/ - no delete, hence no overwrite.
resource "google_storage_bucket_iam_member" "pipeline_publisher" {
  bucket = var.bucket
  role   = "roles/storage.objectCreator"
  member = "serviceAccount:${google_service_account.pipeline.email}"
  condition {
    title       = "publish-under-models-only"
    description = "Create (never delete or overwrite) objects under models/"
    expression  = "resource.name.startsWith(\"${local.models_objects}\")"
  }
}

# The publisher reads what it must: is the version folder empty, the champion's manifest when
# Firestore is unreachable (components/publish).
resource "google_storage_bucket_iam_member" "pipeline_models_reader" {
  bucket = var.bucket
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.pipeline.email}"
  condition {
    title       = "read-models-only"
    description = "Read and list objects under models/"
    expression  = local.models_read_condition
  }
}

# Artifacts bucket: read everything (templates, step outputs; GCS FUSE mounts the bucket).
resource "google_storage_bucket_iam_member" "pipeline_artifacts_reader" {
  bucket = var.artifacts_bucket
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.pipeline.email}"
}

resource "google_storage_bucket_iam_member" "pipeline_artifacts_bucket_get" {
  bucket = var.artifacts_bucket
  role   = google_project_iam_custom_role.bucket_metadata_reader.name
  member = "serviceAccount:${google_service_account.pipeline.email}"
}

# ... and write (overwrite and delete included, KFP needs them) under pipeline-root/ only.
resource "google_storage_bucket_iam_member" "pipeline_root_writer" {
  bucket = var.artifacts_bucket
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.pipeline.email}"
  condition {
    title       = "pipeline-root-only"
    description = "Read/write the pipeline root, nothing else in the artifacts bucket"
    expression  = "resource.name.startsWith(\"${local.artifacts_objects}pipeline-root/\")"
  }
}

# Vertex AI runs the pipeline's steps as the pipeline account: it must be able to act as itself.
resource "google_service_account_iam_member" "pipeline_self" {
  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.pipeline.email}"
}

# ------------------------------------------------------------------------------ scheduler

resource "google_project_iam_member" "scheduler_aiplatform" {
  project = var.project_id
  role    = "roles/aiplatform.user"
  member  = "serviceAccount:${google_service_account.scheduler.email}"
}

resource "google_service_account_iam_member" "scheduler_acts_as_pipeline" {
  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.scheduler.email}"
}

resource "google_storage_bucket_iam_member" "scheduler_templates_reader" {
  bucket = var.artifacts_bucket
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.scheduler.email}"
  condition {
    title       = "templates-only"
    description = "Read compiled pipeline templates under pipelines/"
    expression  = "resource.name.startsWith(\"${local.artifacts_objects}pipelines/\")"
  }
}

# ------------------------------------------------------------------------------ function

# Reads the manifests and files it verifies, under models/ only.
resource "google_storage_bucket_iam_member" "function_reader" {
  bucket = var.bucket
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.function.email}"
  condition {
    title       = "read-models-only"
    description = "Read and list objects under models/"
    expression  = local.models_read_condition
  }
}

# Writes the registry: create-only, registry database only.
resource "google_project_iam_member" "function_registry_writer" {
  project = var.project_id
  role    = google_project_iam_custom_role.registry_writer.name
  member  = "serviceAccount:${google_service_account.function.email}"
  condition {
    title       = "registry-database-only"
    description = "Create/read documents in the edgeship registry database only"
    expression  = "resource.name == \"${local.database}\""
  }
}

resource "google_project_iam_member" "function_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.function.email}"
}

# ------------------------------------------------------------------------------ operators

# The channel documents (pause / pin / resume) are written by people, through IAM.
resource "google_project_iam_member" "operators" {
  for_each = toset(var.operator_members)
  project  = var.project_id
  role     = "roles/datastore.user"
  member   = each.value
  condition {
    title       = "registry-database-only"
    description = "Read/write the edgeship registry database (channel control documents)"
    expression  = "resource.name == \"${local.database}\""
  }
}

# ------------------------------------------------------------------------------ trigger

# Receive Eventarc events (run.invoker is granted on the function's service only).
resource "google_project_iam_member" "trigger_receiver" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = "serviceAccount:${google_service_account.trigger.email}"
}

# ------------------------------------------------------------------------------ audit

# Who created each object and wrote each document is then in Cloud Logging
# (protoPayload.authenticationInfo.principalEmail): the evidence behind "only the pipeline
# publishes" and "only operators move channels".
resource "google_project_iam_audit_config" "data_write" {
  for_each = var.enable_data_write_audit_logs ? toset(["storage.googleapis.com", "datastore.googleapis.com"]) : toset([])
  project  = var.project_id
  service  = each.value
  audit_log_config {
    log_type = "DATA_WRITE"
  }
}

output "pipeline_email" { value = google_service_account.pipeline.email }
output "function_email" { value = google_service_account.function.email }
output "trigger_email" { value = google_service_account.trigger.email }
output "scheduler_email" { value = google_service_account.scheduler.email }
output "registry_writer_role" { value = google_project_iam_custom_role.registry_writer.name }
