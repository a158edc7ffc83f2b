# A weekly (by default) retraining run: Cloud Scheduler POSTs a PipelineJob to the Vertex AI API
# as the scheduler account; the job runs as the pipeline account. The compiled template is
# uploaded by `edgeship pipeline compile --out ... && gsutil cp` (docs/deploy.md), or use
# `edgeship pipeline schedule` to create a Vertex AI PipelineJobSchedule instead.
variable "project_id" { type = string }
variable "region" { type = string }
variable "cron" {
  type    = string
  default = "0 3 * * 1"
}
variable "time_zone" {
  type    = string
  default = "Etc/UTC"
}
variable "template_uri" { type = string }
variable "pipeline_root" { type = string }
variable "pipeline_service_account" { type = string }
variable "scheduler_service_account" { type = string }
variable "parameter_values" {
  type    = map(any)
  default = {}
}

resource "google_cloud_scheduler_job" "retrain" {
  project     = var.project_id
  region      = var.region
  name        = "edgeship-retrain"
  description = "Runs the edgeship pipeline on a schedule"
  schedule    = var.cron
  time_zone   = var.time_zone

  retry_config {
    retry_count = 1
  }

  http_target {
    http_method = "POST"
    uri         = "https://${var.region}-aiplatform.googleapis.com/v1/projects/${var.project_id}/locations/${var.region}/pipelineJobs"
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode(jsonencode({
      displayName    = "edgeship-scheduled"
      templateUri    = var.template_uri
      serviceAccount = var.pipeline_service_account
      runtimeConfig = {
        gcsOutputDirectory = var.pipeline_root
        parameterValues    = var.parameter_values
      }
    }))
    oauth_token {
      service_account_email = var.scheduler_service_account
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }
}

output "job" { value = google_cloud_scheduler_job.retrain.name }
