# A GCS bucket for Plan B backups, with object retention enabled (STORAGE_RETAIN_DAYS needs it, and it
# can only be turned on when the bucket is created) and the same expiry rules as ../gcs-lifecycle.json.

variable "gcs_bucket" {
  description = "The bucket the job writes to (STORAGE_BUCKET)."
  type        = string
}

variable "gcs_location" {
  description = "Where the bucket lives, e.g. EU or europe-west1."
  type        = string
}

resource "google_storage_bucket" "planb" {
  name                        = var.gcs_bucket
  location                    = var.gcs_location
  uniform_bucket_level_access = true
  enable_object_retention     = true

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      age            = 14
      matches_prefix = ["daily/"]
    }
  }

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      age            = 365
      matches_prefix = ["monthly/"]
    }
  }

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      days_since_noncurrent_time = 1
      with_state                 = "ARCHIVED"
    }
  }

  lifecycle_rule {
    action {
      type = "AbortIncompleteMultipartUpload"
    }
    condition {
      age = 1
    }
  }
}
