# edgeship, dev environment: only composes ../../modules.
locals {
  bucket        = coalesce(var.bucket_name, "${var.project_id}-edgeship-models")
  infra_dir     = "${path.module}/../../.."
  repo_root     = "${path.module}/../../../.."
  pipeline_root = "gs://${local.bucket}/pipeline-root"
  template_uri  = "gs://${local.bucket}/pipelines/edgeship_pipeline.yaml"
}

module "apis" {
  source     = "../../modules/apis"
  project_id = var.project_id
}

module "bucket" {
  source     = "../../modules/bucket"
  project_id = var.project_id
  name       = local.bucket
  location   = var.region
  depends_on = [module.apis]
}

module "iam" {
  source     = "../../modules/iam"
  project_id = var.project_id
  bucket     = module.bucket.name
}

module "firestore" {
  source       = "../../modules/firestore"
  project_id   = var.project_id
  location     = var.firestore_location
  rules_file   = "${local.infra_dir}/firestore.rules"
  indexes_file = "${local.infra_dir}/firestore.indexes.json"
  # Firebase Storage rules apply only when Firebase is enabled on the project (mobile clients
  # reading the bucket directly); server-side access is IAM (modules/iam).
  storage_rules_file = var.enable_firebase_storage_rules ? "${local.infra_dir}/storage.rules" : null
  storage_bucket     = module.bucket.name
  depends_on         = [module.apis]
}

module "registry" {
  source         = "../../modules/registry"
  project_id     = var.project_id
  region         = var.region
  reader_members = ["serviceAccount:${module.iam.pipeline_email}"]
  depends_on     = [module.apis]
}

module "function" {
  source                        = "../../modules/function"
  project_id                    = var.project_id
  region                        = var.region
  source_dir                    = "${local.repo_root}/functions/register_model"
  bucket                        = module.bucket.name
  staging_bucket                = module.bucket.name
  service_account_email         = module.iam.function_email
  trigger_service_account_email = module.iam.trigger_email
  depends_on                    = [module.firestore]
}

module "schedule" {
  count                     = var.enable_schedule ? 1 : 0
  source                    = "../../modules/schedule"
  project_id                = var.project_id
  region                    = var.region
  cron                      = var.schedule_cron
  template_uri              = local.template_uri
  pipeline_root             = local.pipeline_root
  pipeline_service_account  = module.iam.pipeline_email
  scheduler_service_account = module.iam.scheduler_email
  parameter_values = {
    model_name = var.model_name
    channel    = var.channel
  }
}
