# edgeship, dev environment: only composes ../../modules.
locals {
  bucket           = coalesce(var.bucket_name, "${var.project_id}-edgeship-models")
  artifacts_bucket = coalesce(var.artifacts_bucket_name, "${var.project_id}-edgeship-artifacts")
  infra_dir        = "${path.module}/../../.."
  repo_root        = "${path.module}/../../../.."
}

module "apis" {
  source     = "../../modules/apis"
  project_id = var.project_id
}

# Published models only (models/{model}/{version}/), create-only for the publisher.
module "bucket" {
  source     = "../../modules/bucket"
  project_id = var.project_id
  name       = local.bucket
  location   = var.region
  depends_on = [module.apis]
}

# Pipeline root, compiled templates and the function's source archives: not the model bucket.
module "artifacts" {
  source     = "../../modules/artifacts"
  project_id = var.project_id
  name       = local.artifacts_bucket
  location   = var.region
  log_bucket = module.bucket.log_bucket
  depends_on = [module.apis]
}

# Firebase project link, the model bucket as a Firebase Storage bucket with infra/storage.rules,
# anonymous auth for the sample app, optional App Check.
module "firebase" {
  count                 = var.enable_firebase ? 1 : 0
  source                = "../../modules/firebase"
  project_id            = var.project_id
  bucket                = module.bucket.name
  storage_rules_file    = "${local.infra_dir}/storage.rules"
  enable_anonymous_auth = var.enable_anonymous_auth
  ios_bundle_id         = var.ios_bundle_id
  ios_team_id           = var.ios_team_id
  app_check_enforcement = var.app_check_enforcement
  depends_on            = [module.apis]
}

module "firestore" {
  source       = "../../modules/firestore"
  project_id   = var.project_id
  location     = var.firestore_location
  rules_file   = "${local.infra_dir}/firestore.rules"
  indexes_file = "${local.infra_dir}/firestore.indexes.json"
  channels     = ["${var.model_name}/${var.channel}"]
  depends_on   = [module.apis, module.firebase]
}

module "iam" {
  source             = "../../modules/iam"
  project_id         = var.project_id
  bucket             = module.bucket.name
  artifacts_bucket   = module.artifacts.name
  firestore_database = module.firestore.database
  operator_members   = var.operator_members
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
  staging_bucket                = module.artifacts.name
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
  template_uri              = module.artifacts.template_uri
  pipeline_root             = module.artifacts.pipeline_root
  pipeline_service_account  = module.iam.pipeline_email
  scheduler_service_account = module.iam.scheduler_email
  parameter_values = {
    model_name = var.model_name
    channel    = var.channel
  }
}
