terraform {
  required_version = ">= 1.6"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.10"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.6"
    }
  }
  # Keep state in a bucket you create once (docs/deploy.md, step 1):
  # backend "gcs" { bucket = "PROJECT-tfstate"  prefix = "edgeship/dev" }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
