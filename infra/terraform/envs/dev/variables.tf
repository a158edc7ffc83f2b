variable "project_id" {
  type        = string
  description = "GCP project to deploy edgeship into."
}
variable "region" {
  type    = string
  default = "us-central1"
}
variable "firestore_location" {
  type    = string
  default = "nam5"
}
variable "bucket_name" {
  type        = string
  default     = null
  description = "Model bucket name; default PROJECT-edgeship-models."
}
variable "model_name" {
  type    = string
  default = "edgeship-detector"
}
variable "channel" {
  type    = string
  default = "stable"
}
variable "schedule_cron" {
  type    = string
  default = "0 3 * * 1"
}
variable "enable_schedule" {
  type        = bool
  default     = false
  description = "Create the Cloud Scheduler job (after the template and image exist)."
}
variable "image_tag" {
  type        = string
  default     = "0.1.0"
  description = "Tag of the edgeship image in the Artifact Registry repository."
}
variable "artifacts_bucket_name" {
  type        = string
  default     = null
  description = "Artifacts bucket (pipeline root, templates, function sources); default PROJECT-edgeship-artifacts."
}
variable "operator_members" {
  type        = list(string)
  default     = []
  description = "Who may pause/pin/resume channels, e.g. [\"group:release-managers@example.com\"]."
}
variable "enable_firebase" {
  type        = bool
  default     = true
  description = "Add Firebase to the project, link the model bucket, deploy infra/storage.rules (modules/firebase)."
}
variable "enable_anonymous_auth" {
  type        = bool
  default     = true
  description = "Enable anonymous sign-in (Identity Platform) for the sample app."
}
variable "ios_bundle_id" {
  type        = string
  default     = null
  description = "Register this iOS app with Firebase (null = none)."
}
variable "ios_team_id" {
  type        = string
  default     = null
  description = "Apple Developer Team ID of the iOS app (needed for App Attest)."
}
variable "app_check_enforcement" {
  type        = string
  default     = "OFF"
  description = "App Check on Firestore and Firebase Storage: OFF, UNENFORCED (metrics) or ENFORCED."
}
