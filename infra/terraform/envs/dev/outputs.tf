output "bucket" { value = module.bucket.name }
output "pipeline_root" { value = local.pipeline_root }
output "pipeline_service_account" { value = module.iam.pipeline_email }
output "image" { value = "${module.registry.image_base}/edgeship:${var.image_tag}" }
output "function_uri" { value = module.function.function_uri }
