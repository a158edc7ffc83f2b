# Firestore (native mode) holding the model registry, its security rules and its indexes.
# The rules and indexes are kept in infra/ (firestore.rules, firestore.indexes.json: the
# Firebase CLI formats) and read from there with file(), so the same files serve
# `firebase deploy` too; Terraform deploys them as a firebaserules ruleset + release.
# (infra/storage.rules is deployed by modules/firebase, with the bucket's Firebase link.)
variable "project_id" { type = string }
variable "location" { type = string }
variable "rules_file" { type = string }
variable "indexes_file" { type = string }
variable "channels" {
  type        = list(string)
  default     = []
  description = <<-EOT
    "model/channel" pairs whose control document (models/{model}/channels/{channel}) Terraform
    creates, not paused and not pinned. The function's Firestore role is create-only, so it could
    otherwise create a missing control document; once one exists only operators change it.
  EOT
  validation {
    condition     = alltrue([for c in var.channels : can(regex("^[a-z0-9][a-z0-9._-]{0,62}/[a-z0-9][a-z0-9_]{0,31}$", c))])
    error_message = "channels: each entry is MODEL/CHANNEL with the names of docs/delivery.md."
  }
}

resource "google_firestore_database" "this" {
  project                           = var.project_id
  name                              = "(default)"
  location_id                       = var.location
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "OPTIMISTIC"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
}

resource "google_firebaserules_ruleset" "firestore" {
  project = var.project_id
  source {
    files {
      name    = "firestore.rules"
      content = file(var.rules_file)
    }
  }
  depends_on = [google_firestore_database.this]
}

resource "google_firebaserules_release" "firestore" {
  project      = var.project_id
  name         = "cloud.firestore"
  ruleset_name = google_firebaserules_ruleset.firestore.name
}

locals {
  indexes         = try(jsondecode(file(var.indexes_file)).indexes, [])
  field_overrides = try(jsondecode(file(var.indexes_file)).fieldOverrides, [])
}

# Single-field index exemptions (large map/array fields that are never queried).
resource "google_firestore_field" "overrides" {
  for_each   = { for o in local.field_overrides : "${o.collectionGroup}.${o.fieldPath}" => o }
  project    = var.project_id
  database   = google_firestore_database.this.name
  collection = each.value.collectionGroup
  field      = each.value.fieldPath

  index_config {
    dynamic "indexes" {
      for_each = each.value.indexes
      content {
        order        = try(indexes.value.order, null)
        array_config = try(indexes.value.arrayConfig, null)
        query_scope  = try(indexes.value.queryScope, "COLLECTION")
      }
    }
  }
}

resource "google_firestore_index" "this" {
  for_each    = { for i, idx in local.indexes : "${idx.collectionGroup}-${i}" => idx }
  project     = var.project_id
  database    = google_firestore_database.this.name
  collection  = each.value.collectionGroup
  query_scope = try(each.value.queryScope, "COLLECTION")

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path   = fields.value.fieldPath
      order        = try(fields.value.order, null)
      array_config = try(fields.value.arrayConfig, null)
    }
  }
}

# Control documents of the declared channels, created once. Operators change them afterwards
# (`edgeship channel ...` rewrites the whole document): Terraform never touches their fields again.
resource "google_firestore_document" "channel" {
  for_each    = toset(var.channels)
  project     = var.project_id
  database    = google_firestore_database.this.name
  collection  = "models/${split("/", each.value)[0]}/channels"
  document_id = split("/", each.value)[1]
  fields = jsonencode({
    model          = { stringValue = split("/", each.value)[0] }
    channel        = { stringValue = split("/", each.value)[1] }
    paused         = { booleanValue = false }
    pinned_version = { nullValue = "NULL_VALUE" }
    updated_by     = { stringValue = "terraform" }
    reason         = { stringValue = "channel created by infra/terraform (modules/firestore)" }
    last_action    = { stringValue = "create" }
    history        = { arrayValue = {} }
  })
  lifecycle {
    ignore_changes = [fields]
  }
}

output "database" { value = google_firestore_database.this.name }
