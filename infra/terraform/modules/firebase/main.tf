# Firebase on the project, for the apps (docs/ios.md): the project link, the model bucket as a
# Firebase Storage bucket with infra/storage.rules deployed on it, anonymous sign-in (Identity
# Platform) for the sample app, an optional Apple app with App Attest, and optional App Check
# enforcement on Firestore and Cloud Storage for Firebase.
#
# Firebase resources are used through the google-beta provider (several are beta-only there, and
# google-beta serves the GA ones too); envs/dev configures it with user_project_override, which
# the Firebase management APIs need for quota attribution.
terraform {
  required_providers {
    google-beta = {
      source = "hashicorp/google-beta"
    }
  }
}

variable "project_id" { type = string }
variable "bucket" {
  type        = string
  description = "The model bucket, linked to Firebase so apps read it through the Storage rules."
}
variable "storage_rules_file" {
  type        = string
  description = "infra/storage.rules; deployed as the bucket's Firebase Storage ruleset."
}
variable "enable_anonymous_auth" {
  type        = bool
  default     = true
  description = "Anonymous sign-in for the sample app (the rules require request.auth != null)."
}
variable "ios_bundle_id" {
  type        = string
  default     = null
  description = "Bundle id of the iOS app to register (null = register none)."
}
variable "ios_team_id" {
  type        = string
  default     = null
  description = "Apple Developer Team ID of the iOS app (App Attest needs it)."
}
variable "app_check_enforcement" {
  type        = string
  default     = "OFF"
  description = "App Check on Firestore and Cloud Storage for Firebase: OFF, UNENFORCED (metrics only) or ENFORCED."
  validation {
    condition     = contains(["OFF", "UNENFORCED", "ENFORCED"], var.app_check_enforcement)
    error_message = "app_check_enforcement is one of OFF, UNENFORCED, ENFORCED."
  }
}

locals {
  # ENFORCED with no app attested would lock every client out: refuse that combination.
  app_attest          = var.ios_bundle_id != null && var.ios_team_id != null
  app_check_services  = var.app_check_enforcement == "OFF" ? [] : ["firestore.googleapis.com", "firebasestorage.googleapis.com"]
  enforced_but_no_app = var.app_check_enforcement == "ENFORCED" && !local.app_attest
}

resource "google_firebase_project" "this" {
  provider = google-beta
  project  = var.project_id
}

# The model bucket becomes a Firebase Storage bucket (firebasestorage addFirebase): the Firebase
# SDKs may address it (Storage.storage(url: "gs://BUCKET")) and its Security Rules apply.
resource "google_firebase_storage_bucket" "models" {
  provider   = google-beta
  project    = var.project_id
  bucket_id  = var.bucket
  depends_on = [google_firebase_project.this]
}

resource "google_firebaserules_ruleset" "storage" {
  provider = google-beta
  project  = var.project_id
  source {
    files {
      name    = "storage.rules"
      content = file(var.storage_rules_file)
    }
  }
  depends_on = [google_firebase_storage_bucket.models]
}

resource "google_firebaserules_release" "storage" {
  provider     = google-beta
  project      = var.project_id
  name         = "firebase.storage/${var.bucket}"
  ruleset_name = google_firebaserules_ruleset.storage.name
}

# Firebase Authentication (Identity Platform): anonymous sign-in, anonymous users deleted after
# 30 days of inactivity. Nothing else is enabled.
resource "google_identity_platform_config" "auth" {
  provider                   = google-beta
  count                      = var.enable_anonymous_auth ? 1 : 0
  project                    = var.project_id
  autodelete_anonymous_users = true
  sign_in {
    allow_duplicate_emails = false
    anonymous {
      enabled = true
    }
  }
  depends_on = [google_firebase_project.this]
}

resource "google_firebase_apple_app" "ios" {
  provider        = google-beta
  count           = var.ios_bundle_id == null ? 0 : 1
  project         = var.project_id
  display_name    = "edgeship iOS"
  bundle_id       = var.ios_bundle_id
  team_id         = var.ios_team_id
  deletion_policy = "ABANDON"
  depends_on      = [google_firebase_project.this]
}

# App Attest is the App Check provider for the iOS app (DeviceCheck needs a private key, which
# does not belong in Terraform state). App Check may take a few seconds to know a new app: if this
# fails on the first apply right after the app was created, apply again.
resource "google_firebase_app_check_app_attest_config" "ios" {
  provider = google-beta
  count    = local.app_attest ? 1 : 0
  project  = var.project_id
  app_id   = google_firebase_apple_app.ios[0].app_id
}

resource "google_firebase_app_check_service_config" "services" {
  provider         = google-beta
  for_each         = toset(local.app_check_services)
  project          = var.project_id
  service_id       = each.value
  enforcement_mode = var.app_check_enforcement
  depends_on       = [google_firebase_project.this]

  lifecycle {
    precondition {
      condition     = !local.enforced_but_no_app
      error_message = "app_check_enforcement = ENFORCED needs ios_bundle_id and ios_team_id (an attested app), or every client is refused."
    }
  }
}

output "storage_bucket" { value = google_firebase_storage_bucket.models.bucket_id }
output "storage_rules_release" { value = google_firebaserules_release.storage.name }
output "ios_app_id" { value = try(google_firebase_apple_app.ios[0].app_id, null) }
