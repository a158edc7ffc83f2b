# Firestore (native mode) holding the model registry, its security rules and its indexes.
# The rules and indexes are kept in infra/ (firestore.rules, firestore.indexes.json: the
# Firebase CLI formats) and read from there, so the same files serve `firebase deploy` too.
variable "project_id" { type = string }
variable "location" { type = string }
variable "rules_file" { type = string }
variable "indexes_file" { type = string }
variable "storage_rules_file" {
  type        = string
  default     = null
  description = "Firebase Storage rules (infra/storage.rules) for the model bucket; needs Firebase on the project."
}
variable "storage_bucket" {
  type    = string
  default = null
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

resource "google_firebaserules_ruleset" "storage" {
  count   = var.storage_rules_file == null ? 0 : 1
  project = var.project_id
  source {
    files {
      name    = "storage.rules"
      content = file(var.storage_rules_file)
    }
  }
}

resource "google_firebaserules_release" "storage" {
  count        = var.storage_rules_file == null ? 0 : 1
  project      = var.project_id
  name         = "firebase.storage/${var.storage_bucket}"
  ruleset_name = google_firebaserules_ruleset.storage[0].name
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

output "database" { value = google_firestore_database.this.name }
