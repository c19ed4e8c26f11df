//! What the agent and the collector agree on for `POST /v1/batches`
//! (the full contract is `docs/protocol.md`).

/// Upload endpoint.
pub const BATCHES_PATH: &str = "/v1/batches";
/// Header naming the table of the uploaded Parquet file.
pub const HEADER_TABLE: &str = "x-strand-table";
/// Header naming the cluster.
pub const HEADER_CLUSTER: &str = "x-strand-cluster";
/// Header naming the node.
pub const HEADER_NODE: &str = "x-strand-node";
/// Header carrying the batch id, the idempotency key.
pub const HEADER_BATCH_ID: &str = "x-strand-batch-id";
/// Header carrying the batch's date partition: `YYYY-MM-DD`, the UTC date of
/// the batch's first row (the agent's spool uses the same date).
pub const HEADER_DATE: &str = "x-strand-date";
/// Header carrying the batch's row count (checked against the file).
pub const HEADER_ROWS: &str = "x-strand-rows";

/// Checks a cluster or node name: 1–64 characters from `[A-Za-z0-9._-]`, not
/// starting with `.` or `-`. Such a name can never leave the storage root or
/// break the Hive layout (`node=<n>`), wherever it is used as a path part.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("{what} name must be 1 to 64 characters, got {} ({name:?})", name.len()));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err(format!("{what} name {name:?} must not start with '.' or '-'"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("{what} name {name:?} has character {c:?}; allowed are A-Z a-z 0-9 . _ -"));
    }
    Ok(())
}

/// Checks a batch id: 8–128 characters from `[A-Za-z0-9_-]` (it becomes a file name).
pub fn validate_batch_id(id: &str) -> Result<(), String> {
    if id.len() < 8 || id.len() > 128 {
        return Err(format!("batch id must be 8 to 128 characters, got {}", id.len()));
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))) {
        return Err(format!("batch id {id:?} has character {c:?}; allowed are A-Z a-z 0-9 _ -"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_a_directory_are_refused() {
        for bad in ["", "..", "../x", "a/b", "a\\b", ".hidden", "-rf", "a b", "nöde", &"x".repeat(65)] {
            assert!(validate_name("node", bad).is_err(), "{bad:?} accepted");
        }
        for good in ["gpu-node-017", "a", "dc1.rack4_n7", &"x".repeat(64)] {
            assert!(validate_name("node", good).is_ok(), "{good:?} refused");
        }
        assert!(validate_batch_id("0123456789abcdef-kernel_events").is_ok());
        assert!(validate_batch_id("short").is_err());
        assert!(validate_batch_id("abcdefgh.parquet").is_err());
    }
}
