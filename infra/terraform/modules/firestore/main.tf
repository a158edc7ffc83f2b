# Firestore (native mode) holding the model registry, its security rules and its indexes.
# The rules and indexes are kept in infra/ (firestore.rules, firestore.indexes.json: the
# Firebase CLI formats) and read from there, so the same files serve `firebase deploy` too.
variable "project_id" { type = string }
variable "location" { type = string }
variable "rules_file" { type = string }
variable "indexes_file" { type = string }

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
  indexes = try(jsondecode(file(var.indexes_file)).indexes, [])
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
