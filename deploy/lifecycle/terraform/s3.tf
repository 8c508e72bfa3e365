# Expiry of Plan B backups in an S3 bucket: the same rules as ../s3-lifecycle.json.
# Delete markers and old versions matter because Object Lock buckets are versioned: expiry makes the
# backup a noncurrent version, removed a day later (never before its retain-until date).

variable "s3_bucket" {
  description = "The bucket the job writes to (STORAGE_BUCKET)."
  type        = string
}

resource "aws_s3_bucket_lifecycle_configuration" "planb" {
  bucket = var.s3_bucket

  rule {
    id     = "planb-daily"
    status = "Enabled"
    filter {
      prefix = "daily/"
    }
    expiration {
      days = 14
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  rule {
    id     = "planb-monthly"
    status = "Enabled"
    filter {
      prefix = "monthly/"
    }
    expiration {
      days = 365
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  rule {
    id     = "planb-abort-incomplete-uploads"
    status = "Enabled"
    filter {
      prefix = ""
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}
