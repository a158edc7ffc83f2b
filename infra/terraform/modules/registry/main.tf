# Artifact Registry repository for the edgeship images (cloudbuild.yaml pushes here).
variable "project_id" { type = string }
variable "region" { type = string }
variable "repository_id" {
  type    = string
  default = "edgeship"
}
variable "kms_key_name" {
  type    = string
  default = null
}
variable "reader_members" {
  type        = list(string)
  default     = []
  description = "Principals that pull images (the pipeline's service account)."
}

resource "google_artifact_registry_repository" "images" {
  # checkov:skip=CKV_GCP_84: CMEK is optional (var.kms_key_name); Google-managed keys by default.
  project       = var.project_id
  location      = var.region
  repository_id = var.repository_id
  format        = "DOCKER"
  description   = "edgeship pipeline images"
  kms_key_name  = var.kms_key_name

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 20
    }
  }
  cleanup_policies {
    id     = "delete-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "2592000s"
    }
  }
}

resource "google_artifact_registry_repository_iam_member" "readers" {
  for_each   = toset(var.reader_members)
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = each.value
}

output "image_base" {
  value = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}
