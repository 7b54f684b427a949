//! `mapshare info FILE [--json]`: what a file is and how much of it is in
//! memory.

use std::path::Path;

use mapshare::{Access, Error, RegionOptions};

use crate::Failure;

pub fn run(file: &Path, json: bool) -> Result<(), Failure> {
    let page = mapshare::sys::page_size();
    let opened = RegionOptions::new().access(Access::ReadOnly).open(file);
    let (size, resident, total) = match opened {
        Ok(region) => {
            let r = region.residency()?;
            (region.len() as u64, r.resident, r.total)
        }
        Err(Error::Empty { .. }) => (0, 0, 0),
        Err(e) => return Err(e.into()),
    };
    let percent = if total == 0 {
        0.0
    } else {
        resident as f64 * 100.0 / total as f64
    };
    if json {
        let v = serde_json::json!({
            "path": file.display().to_string(),
            "size": size,
            "page_size": page,
            "pages_resident": resident,
            "pages_total": total,
            "resident_percent": percent,
            "kind": "plain",
            "mapshare_file": false,
        });
        println!("{v}");
    } else {
        println!("file:      {}", file.display());
        println!("size:      {size} bytes");
        println!("page size: {page} bytes");
        println!("resident:  {resident} of {total} pages ({percent:.1}%)");
        println!("kind:      plain file (no mapshare header)");
    }
    Ok(())
}
