terraform {
  required_version = ">= 1.6"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.10"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
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

# Firebase resources (modules/firebase). The Firebase management APIs attribute quota to the
# project being changed, which needs user_project_override + billing_project.
provider "google-beta" {
  project               = var.project_id
  region                = var.region
  user_project_override = true
  billing_project       = var.project_id
}
