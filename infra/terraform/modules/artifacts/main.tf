# The artifacts bucket: everything that is *not* a published model, kept out of the model bucket
# so that the model bucket's IAM can be create-only for the publisher:
#   pipeline-root/  Vertex AI / KFP pipeline root (step outputs, caches); the pipeline account
#                   reads and writes here (overwrites and deletes included: KFP needs them).
#   pipelines/      compiled pipeline templates (edgeship pipeline compile); read by the
#                   pipeline and scheduler accounts, written by operators.
#   functions/      the register_model function's source archives (uploaded by Terraform).
# Grants are made in modules/iam, per prefix, with IAM conditions.
variable "project_id" { type = string }
variable "name" { type = string }
variable "location" { type = string }
variable "log_bucket" {
  type        = string
  description = "Bucket that receives this bucket's access logs (the model bucket's log sink)."
}
variable "pipeline_root_days" {
  type        = number
  default     = 90
  description = "Pipeline-root objects (step outputs, cache) are deleted after this many days."
}
variable "noncurrent_days" {
  type    = number
  default = 7
}
variable "kms_key_name" {
  type        = string
  default     = null
  description = "Optional CMEK key for the bucket (null = Google-managed encryption)."
}

resource "google_storage_bucket" "artifacts" {
  project                     = var.project_id
  name                        = var.name
  location                    = var.location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  # Old step outputs: the pipeline cache only reuses recent ones.
  lifecycle_rule {
    condition {
      age            = var.pipeline_root_days
      matches_prefix = ["pipeline-root/"]
    }
    action { type = "Delete" }
  }
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_days
      with_state                 = "ARCHIVED"
    }
    action { type = "Delete" }
  }

  logging {
    log_bucket        = var.log_bucket
    log_object_prefix = "artifacts/"
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }
}

output "name" { value = google_storage_bucket.artifacts.name }
output "pipeline_root" { value = "gs://${google_storage_bucket.artifacts.name}/pipeline-root" }
output "template_uri" { value = "gs://${google_storage_bucket.artifacts.name}/pipelines/edgeship_pipeline.yaml" }
