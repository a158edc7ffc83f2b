# The register_model Cloud Function (2nd gen) and its Eventarc trigger on the model bucket's
# object-finalize events. The source archive's object name carries the hash of the folder's
# contents, so the function is redeployed exactly when its code changes.
variable "project_id" { type = string }
variable "region" { type = string }
variable "source_dir" { type = string }
variable "bucket" { type = string }
variable "staging_bucket" {
  type        = string
  description = "Bucket that holds the function's source archives."
}
variable "service_account_email" { type = string }
variable "trigger_service_account_email" { type = string }
variable "name" {
  type    = string
  default = "register-model"
}
variable "entry_point" {
  type    = string
  default = "register_model"
}

data "google_project" "this" {
  project_id = var.project_id
}

data "archive_file" "source" {
  type        = "zip"
  source_dir  = var.source_dir
  output_path = "${path.root}/.terraform/tmp/${var.name}.zip"
  excludes    = ["__pycache__", "tests", ".pytest_cache"]
}

resource "google_storage_bucket_object" "source" {
  name   = "functions/${var.name}-${data.archive_file.source.output_sha256}.zip"
  bucket = var.staging_bucket
  source = data.archive_file.source.output_path
}

# GCS publishes finalize events through Pub/Sub: its service agent must be allowed to publish.
data "google_storage_project_service_account" "gcs" {
  project = var.project_id
}

resource "google_project_iam_member" "gcs_pubsub_publisher" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

resource "google_cloudfunctions2_function" "this" {
  project     = var.project_id
  location    = var.region
  name        = var.name
  description = "Registers published model versions in Firestore (functions/register_model)"

  build_config {
    runtime     = "python311"
    entry_point = var.entry_point
    source {
      storage_source {
        bucket = var.staging_bucket
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    max_instance_count               = 10
    min_instance_count               = 0
    available_memory                 = "512M"
    timeout_seconds                  = 60
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = var.service_account_email
    environment_variables = {
      GOOGLE_CLOUD_PROJECT = var.project_id
      LOG_EXECUTION_ID     = "true"
      MODEL_BUCKET         = var.bucket
    }
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.storage.object.v1.finalized"
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = var.trigger_service_account_email
    event_filters {
      attribute = "bucket"
      value     = var.bucket
    }
  }

  depends_on = [google_project_iam_member.gcs_pubsub_publisher]
}

# Only the trigger's identity may invoke the function's Cloud Run service.
resource "google_cloud_run_service_iam_member" "invoker" {
  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.this.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${var.trigger_service_account_email}"
}

output "function_uri" { value = google_cloudfunctions2_function.this.service_config[0].uri }
output "source_object" { value = google_storage_bucket_object.source.name }
