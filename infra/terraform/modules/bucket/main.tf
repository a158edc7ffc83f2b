# The model bucket: published versions live at models/{model}/{version}/ and are never
# overwritten (the publisher uses if_generation_match=0, and its IAM grant cannot delete or
# overwrite: modules/iam). It holds nothing else: the pipeline root, compiled templates and the
# function's source archives live in the artifacts bucket (modules/artifacts). Versioning keeps a
# deleted or replaced object recoverable; noncurrent versions are removed after var.noncurrent_days.
# With Firebase on (modules/firebase) this bucket is also linked as a Firebase Storage bucket, so
# the apps read it through infra/storage.rules (signed in, App Check when enforced).
variable "project_id" { type = string }
variable "name" { type = string }
variable "location" { type = string }
variable "noncurrent_days" {
  type    = number
  default = 30
}
variable "kms_key_name" {
  type        = string
  default     = null
  description = "Optional CMEK key for the bucket (null = Google-managed encryption)."
}

# Access logs of the model bucket go to a bucket of their own.
resource "google_storage_bucket" "logs" {
  # checkov:skip=CKV_GCP_62: this is the access-log sink; logging it into itself would loop.
  # checkov:skip=CKV_GCP_78: access logs are append-only and expire; versioning adds nothing.
  project                     = var.project_id
  name                        = "${var.name}-logs"
  location                    = var.location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  lifecycle_rule {
    condition { age = 90 }
    action { type = "Delete" }
  }
}

resource "google_storage_bucket" "models" {
  project                     = var.project_id
  name                        = var.name
  location                    = var.location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_days
      with_state                 = "ARCHIVED"
    }
    action { type = "Delete" }
  }
  lifecycle_rule {
    condition {
      num_newer_versions = 3
      with_state         = "ARCHIVED"
    }
    action { type = "Delete" }
  }

  logging {
    log_bucket = google_storage_bucket.logs.name
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }
}

output "name" { value = google_storage_bucket.models.name }
output "url" { value = google_storage_bucket.models.url }
output "log_bucket" { value = google_storage_bucket.logs.name }
