output "bucket" { value = module.bucket.name }
output "artifacts_bucket" { value = module.artifacts.name }
output "pipeline_root" { value = module.artifacts.pipeline_root }
output "template_uri" { value = module.artifacts.template_uri }
output "pipeline_service_account" { value = module.iam.pipeline_email }
output "image" { value = "${module.registry.image_base}/edgeship:${var.image_tag}" }
output "function_uri" { value = module.function.function_uri }
output "ios_app_id" { value = try(module.firebase[0].ios_app_id, null) }
