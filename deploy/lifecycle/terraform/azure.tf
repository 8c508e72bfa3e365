# Expiry of Plan B backups in an Azure storage account: the same rules as
# ../azure-management-policy.json. Prefixes start with the container name (STORAGE_BUCKET, `backups`
# here). With version-level immutability the account keeps blob versions: a deleted backup becomes a
# previous version, removed a day later (never before its immutability policy expires).

variable "azure_storage_account_id" {
  description = "Resource id of the storage account that holds the container."
  type        = string
}

resource "azurerm_storage_management_policy" "planb" {
  storage_account_id = var.azure_storage_account_id

  rule {
    name    = "planbdaily"
    enabled = true
    filters {
      blob_types   = ["blockBlob"]
      prefix_match = ["backups/daily/"]
    }
    actions {
      base_blob {
        delete_after_days_since_modification_greater_than = 14
      }
      version {
        delete_after_days_since_creation = 15
      }
    }
  }

  rule {
    name    = "planbmonthly"
    enabled = true
    filters {
      blob_types   = ["blockBlob"]
      prefix_match = ["backups/monthly/"]
    }
    actions {
      base_blob {
        delete_after_days_since_modification_greater_than = 365
      }
      version {
        delete_after_days_since_creation = 366
      }
    }
  }
}
