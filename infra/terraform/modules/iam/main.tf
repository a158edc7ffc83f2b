# Service accounts with least privilege:
#  - pipeline: runs Vertex AI pipeline jobs; writes the model bucket (create-only by design of the
#    publisher), reads Firestore (the champion), pulls images.
#  - function: the register_model Cloud Function; reads the model bucket, writes Firestore.
#  - trigger: the identity Eventarc uses to invoke the function.
#  - scheduler: Cloud Scheduler's identity to start pipeline jobs.
# Bucket- and repository-scoped grants are made on those resources, not on the project.
variable "project_id" { type = string }
variable "bucket" { type = string }

resource "google_service_account" "pipeline" {
  project      = var.project_id
  account_id   = "edgeship-pipeline"
  display_name = "edgeship pipeline (Vertex AI Pipelines)"
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

# Pipeline: run Vertex AI jobs, read Firestore, write logs; objects in the model bucket only.
resource "google_project_iam_member" "pipeline" {
  for_each = toset(["roles/aiplatform.user", "roles/datastore.viewer", "roles/logging.logWriter"])
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.pipeline.email}"
}

resource "google_storage_bucket_iam_member" "pipeline_objects" {
  bucket = var.bucket
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.pipeline.email}"
}

# Vertex AI runs the pipeline's steps as the pipeline account: it must be able to act as itself.
resource "google_service_account_iam_member" "pipeline_self" {
  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.pipeline.email}"
}

# Scheduler starts jobs that run as the pipeline account.
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

# Function: read the manifests and files it verifies; write the registry; write logs.
resource "google_storage_bucket_iam_member" "function_reader" {
  bucket = var.bucket
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.function.email}"
}

resource "google_project_iam_member" "function" {
  for_each = toset(["roles/datastore.user", "roles/logging.logWriter"])
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.function.email}"
}

# Trigger: receive Eventarc events (run.invoker is granted on the function's service only).
resource "google_project_iam_member" "trigger_receiver" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = "serviceAccount:${google_service_account.trigger.email}"
}

output "pipeline_email" { value = google_service_account.pipeline.email }
output "function_email" { value = google_service_account.function.email }
output "trigger_email" { value = google_service_account.trigger.email }
output "scheduler_email" { value = google_service_account.scheduler.email }
