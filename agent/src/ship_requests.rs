//! Jobs whose full `kernel_events` an operator asked to ship
//! (`strand-agent ship-kernel-events JOB`), although they stay on the node by
//! default (issue 17). The request is one job id per line in
//! `<data_dir>/ship-kernel-events`: the running agent reads it before every
//! upload round, so a request takes effect within seconds without a restart,
//! survives one, and needs no listening socket.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The request file's name in the data directory.
pub const FILE_NAME: &str = "ship-kernel-events";
/// Bounds on what is read from the file (it is written by root, but a
/// mistake must not cost the agent memory): its size, its jobs, a job id.
const MAX_FILE_BYTES: u64 = 64 << 10;
pub const MAX_JOBS: usize = 256;
pub const MAX_JOB_BYTES: usize = 256;

/// The request file of one data directory.
#[derive(Debug, Clone)]
pub struct ShipRequests {
    path: PathBuf,
}

impl ShipRequests {
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self { path: data_dir.join(FILE_NAME) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The requested jobs; none when the file does not exist.
    pub fn read(&self) -> io::Result<BTreeSet<String>> {
        let file = match fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
            Err(e) => return Err(e),
        };
        let mut text = String::new();
        file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text)?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(invalid(format!("{} is over {MAX_FILE_BYTES} bytes", self.path.display())));
        }
        let mut jobs = BTreeSet::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            check_job(line).map_err(|why| invalid(format!("{}: {why}", self.path.display())))?;
            jobs.insert(line.to_string());
        }
        if jobs.len() > MAX_JOBS {
            return Err(invalid(format!("{} names over {MAX_JOBS} jobs", self.path.display())));
        }
        Ok(jobs)
    }

    /// Adds (`ship = true`) or removes a job; returns whether the file changed.
    /// Written to a temporary file and renamed, so the agent never reads half
    /// a request.
    pub fn set(&self, job: &str, ship: bool) -> io::Result<bool> {
        check_job(job).map_err(invalid)?;
        let mut jobs = self.read()?;
        let changed = if ship { jobs.insert(job.to_string()) } else { jobs.remove(job) };
        if !changed {
            return Ok(false);
        }
        if jobs.len() > MAX_JOBS {
            return Err(invalid(format!("at most {MAX_JOBS} jobs can be requested at once")));
        }
        let mut text =
            String::from("# Jobs whose full kernel_events this agent ships (strand-agent ship-kernel-events).\n");
        for j in &jobs {
            text.push_str(j);
            text.push('\n');
        }
        let tmp = self.path.with_file_name(format!(".{FILE_NAME}.tmp"));
        fs::write(&tmp, text)?;
        fs::rename(&tmp, &self.path)?;
        Ok(true)
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A job id as the agent records it: one line of text, bounded.
fn check_job(job: &str) -> Result<(), String> {
    if job.trim().is_empty() {
        return Err("a job id cannot be empty".into());
    }
    if job.len() > MAX_JOB_BYTES {
        return Err(format!("job id of {} bytes is over {MAX_JOB_BYTES}", job.len()));
    }
    if job != job.trim() || job.chars().any(char::is_control) || job.starts_with('#') {
        return Err(format!("job id {job:?} has surrounding spaces, a control character or a leading '#'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_added_removed_and_survive_a_reread() {
        let dir = tempfile::tempdir().unwrap();
        let r = ShipRequests::in_data_dir(dir.path());
        assert!(r.read().unwrap().is_empty(), "no file, no request");
        assert!(r.set("llama-70b/run 3", true).unwrap());
        assert!(!r.set("llama-70b/run 3", true).unwrap(), "asked twice, written once");
        assert!(r.set("81234", true).unwrap());
        let want: BTreeSet<String> = ["81234".to_string(), "llama-70b/run 3".to_string()].into();
        assert_eq!(ShipRequests::in_data_dir(dir.path()).read().unwrap(), want);
        assert!(r.set("81234", false).unwrap());
        assert!(!r.set("never-asked", false).unwrap());
        assert_eq!(r.read().unwrap().into_iter().collect::<Vec<_>>(), vec!["llama-70b/run 3".to_string()]);
        assert!(!dir.path().join(format!(".{FILE_NAME}.tmp")).exists());
    }

    #[test]
    fn bad_job_ids_and_oversized_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let r = ShipRequests::in_data_dir(dir.path());
        for bad in ["", " padded", "two\nlines", "#comment", &"j".repeat(MAX_JOB_BYTES + 1)] {
            let e = r.set(bad, true).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad:?}");
        }
        assert!(r.read().unwrap().is_empty(), "nothing written by a refused request");
        fs::write(r.path(), "x\n".repeat(MAX_FILE_BYTES as usize)).unwrap();
        assert!(r.read().unwrap_err().to_string().contains("is over"));
        fs::write(r.path(), (0..=MAX_JOBS).map(|i| format!("job-{i}\n")).collect::<String>()).unwrap();
        assert!(r.read().unwrap_err().to_string().contains("over 256 jobs"));
    }
}
