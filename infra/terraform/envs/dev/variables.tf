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
variable "enable_firebase_storage_rules" {
  type        = bool
  default     = false
  description = "Deploy infra/storage.rules (needs Firebase added to the project and the bucket linked)."
}
