//! `mapshare info FILE [--json]`: what a file is, how much of it is in
//! memory, and for mapshare files the header, the attached processes and
//! the state of the sync primitives it holds.

use std::path::Path;
use std::time::UNIX_EPOCH;

use mapshare::sync::observe_mutex;
use mapshare::unstable::lease::LeaseTable;
use mapshare::{Access, Error, Inspection, Kind, RegionOptions};
use serde_json::{json, Value};

use crate::Failure;

pub fn run(file: &Path, json: bool) -> Result<(), Failure> {
    let page = mapshare::unstable::sys::page_size();
    let opened = RegionOptions::new().access(Access::ReadOnly).open(file);
    let (size, resident, total) = match &opened {
        Ok(region) => {
            let r = region.residency()?;
            (region.len() as u64, r.resident, r.total)
        }
        Err(Error::Empty { .. }) => (0, 0, 0),
        Err(e) => return Err(Failure(e.to_string())),
    };
    drop(opened);
    let percent = if total == 0 {
        0.0
    } else {
        resident as f64 * 100.0 / total as f64
    };
    let mut v = json!({
        "path": file.display().to_string(),
        "size": size,
        "page_size": page,
        "pages_resident": resident,
        "pages_total": total,
        "resident_percent": percent,
    });
    let inspection = if size == 0 {
        Err(Error::NotMapshare {
            origin: mapshare::Origin::path(file),
        })
    } else {
        Inspection::open(file)
    };
    match inspection {
        Ok(insp) => describe(&insp, &mut v)?,
        Err(Error::NotMapshare { .. }) => {
            v["kind"] = json!("plain");
            v["mapshare_file"] = json!(false);
        }
        // A damaged mapshare file: say what is wrong, but still a result.
        Err(e) => {
            v["kind"] = json!("damaged");
            v["mapshare_file"] = json!(true);
            v["error"] = json!(e.to_string());
        }
    }
    if json {
        println!("{v}");
    } else {
        print_text(&v);
    }
    Ok(())
}

fn describe(insp: &Inspection, v: &mut Value) -> Result<(), Failure> {
    let h = &insp.header;
    v["mapshare_file"] = json!(true);
    v["kind"] = json!(h.kind.name());
    v["header"] = json!({
        "version": mapshare::format::VERSION,
        "page_size_at_creation": h.page_size,
        "initialized_by_pid": h.init_pid,
        "type": {
            "name": h.fingerprint.name,
            "size": h.fingerprint.size,
            "align": h.fingerprint.align,
            "hash": format!("{:#018x}", h.fingerprint.hash),
        },
        "file_len": h.file_len,
        "guard_page": h.guard_page(),
        "lease_offset": h.lease_offset,
        "lease_slots": h.lease_slots,
        "object_offset": h.object_offset,
        "object_len": h.object_len,
    });
    let leases = LeaseTable::new(&insp.region, h.lease_offset, h.lease_slots);
    let attached: Vec<Value> = leases
        .list(None)?
        .into_iter()
        .map(|a| {
            json!({
                "pid": a.pid,
                "slot": a.slot,
                "generation": a.generation,
                "since_unix_ms": a.since.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
                "alive": a.alive,
            })
        })
        .collect();
    v["attached"] = json!(attached);
    if h.kind == Kind::Queue {
        v["queue"] = match mapshare::queue::observe(insp) {
            Ok(q) => {
                let side = |s: Option<(u32, bool)>| match s {
                    Some((pid, alive)) => json!({"pid": pid, "alive": alive}),
                    None => Value::Null,
                };
                let fences = |f: Option<mapshare::sync::FenceMode>| f.map(|f| f.name());
                json!({
                    "capacity": q.capacity,
                    "used_bytes": q.used,
                    "records_pending": q.records,
                    "producer": side(q.producer),
                    "consumer": side(q.consumer),
                    "fences": {
                        "producer": fences(q.fences[0]),
                        "consumer": fences(q.fences[1]),
                    },
                })
            }
            Err(e) => json!({"error": e.to_string()}),
        };
    }
    if h.kind == Kind::Snapshot {
        v["snapshot"] = match mapshare::snapshot::observe(insp) {
            Ok(s) => json!({
                "generation": s.generation,
                "value_len": s.value_len,
                "slots": s.slots.iter().map(|&(offset, capacity, generation, len)| json!({
                    "offset": offset,
                    "capacity": capacity,
                    "generation": generation,
                    "len": len,
                })).collect::<Vec<_>>(),
                "segments": {
                    "distinct": s.slots.iter().filter(|sl| sl.1 > 0).count(),
                    "bytes": s.segment_bytes,
                },
                "writer": match s.writer {
                    Some((pid, alive)) => json!({"pid": pid, "alive": alive}),
                    None => Value::Null,
                },
                "readers": s.readers.iter().map(|&(pid, alive, pinned)| json!({
                    "pid": pid,
                    "alive": alive,
                    "pinned_generation": if pinned == 0 { Value::Null } else { json!(pinned) },
                })).collect::<Vec<_>>(),
            }),
            Err(e) => json!({"error": e.to_string()}),
        };
    }
    if h.kind == Kind::Value {
        let state = observe_mutex(&insp.region, &leases, h.object_offset);
        v["mutex"] = match state {
            Ok(s) => json!(s.to_string()),
            Err(e) => json!(format!("unreadable: {e}")),
        };
    }
    Ok(())
}

fn print_text(v: &Value) {
    println!("file:      {}", v["path"].as_str().unwrap_or(""));
    println!("size:      {} bytes", v["size"]);
    println!("page size: {} bytes", v["page_size"]);
    println!(
        "resident:  {} of {} pages ({:.1}%)",
        v["pages_resident"],
        v["pages_total"],
        v["resident_percent"].as_f64().unwrap_or(0.0)
    );
    match v["kind"].as_str() {
        Some("plain") => println!("kind:      plain file (no mapshare header)"),
        Some("damaged") => println!(
            "kind:      damaged mapshare file: {}",
            v["error"].as_str().unwrap_or("")
        ),
        Some(kind) => {
            let h = &v["header"];
            println!(
                "kind:      mapshare file, object kind {kind}, format version {}",
                h["version"]
            );
            println!(
                "type:      {} (size {}, align {}, hash {})",
                h["type"]["name"],
                h["type"]["size"],
                h["type"]["align"],
                h["type"]["hash"].as_str().unwrap_or("")
            );
            println!(
                "layout:    header at 0, {} lease slots at {}, object of {} bytes at {}{}; page size at creation {}",
                h["lease_slots"],
                h["lease_offset"],
                h["object_len"],
                h["object_offset"],
                match h["guard_page"].as_u64() {
                    Some(at) => format!(", guard page at {at}"),
                    None => String::new(),
                },
                h["page_size_at_creation"]
            );
            println!("created by pid {}", h["initialized_by_pid"]);
            let attached = v["attached"].as_array().cloned().unwrap_or_default();
            if attached.is_empty() {
                println!("attached:  none");
            }
            for a in attached {
                let since = a["since_unix_ms"].as_u64().unwrap_or(0);
                let age = std::time::SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|now| (now.as_millis() as u64).saturating_sub(since) as f64 / 1000.0)
                    .unwrap_or(0.0);
                println!(
                    "attached:  pid {} in slot {} (generation {}), since {:.1}s ago, {}",
                    a["pid"],
                    a["slot"],
                    a["generation"],
                    age,
                    if a["alive"] == json!(true) {
                        "alive"
                    } else {
                        "dead"
                    }
                );
            }
            let q = &v["queue"];
            if !q.is_null() {
                if let Some(e) = q["error"].as_str() {
                    println!("queue:     unreadable: {e}");
                } else {
                    println!(
                        "queue:     capacity {} bytes, {} bytes used, {} records pending",
                        q["capacity"], q["used_bytes"], q["records_pending"]
                    );
                    for role in ["producer", "consumer"] {
                        let s = &q[role];
                        let fences = match q["fences"][role].as_str() {
                            Some(f) => format!(", {f}"),
                            None => String::new(),
                        };
                        if s.is_null() {
                            println!("{role}:  none{fences}");
                        } else {
                            println!(
                                "{role}:  pid {} ({}){fences}",
                                s["pid"],
                                if s["alive"] == json!(true) {
                                    "alive"
                                } else {
                                    "dead"
                                }
                            );
                        }
                    }
                }
            }
            print_snapshot(&v["snapshot"]);
            if let Some(m) = v["mutex"].as_str() {
                println!("mutex:     {m}");
            }
        }
        None => {}
    }
}

fn print_snapshot(s: &Value) {
    if s.is_null() {
        return;
    }
    if let Some(e) = s["error"].as_str() {
        println!("snapshot:  unreadable: {e}");
        return;
    }
    if s["generation"] == json!(0) {
        println!("snapshot:  nothing published yet");
    } else {
        println!(
            "snapshot:  generation {}, value of {} bytes",
            s["generation"], s["value_len"]
        );
    }
    let slots = s["slots"].as_array().cloned().unwrap_or_default();
    let caps: Vec<String> = slots
        .iter()
        .map(|sl| format!("{} (generation {})", sl["capacity"], sl["generation"]))
        .collect();
    println!("slots:     {}: capacities {}", slots.len(), caps.join(", "));
    println!(
        "segments:  {} bytes in the file ({} in use by slots)",
        s["segments"]["bytes"], s["segments"]["distinct"]
    );
    match &s["writer"] {
        Value::Null => println!("writer:    none"),
        w => println!(
            "writer:    pid {} ({})",
            w["pid"],
            if w["alive"] == json!(true) {
                "alive"
            } else {
                "dead"
            }
        ),
    }
    let readers = s["readers"].as_array().cloned().unwrap_or_default();
    if readers.is_empty() {
        println!("readers:   none");
    }
    for r in readers {
        let pin = match &r["pinned_generation"] {
            Value::Null => "no pin".to_string(),
            g => format!("pins generation {g}"),
        };
        println!(
            "reader:    pid {} ({}), {pin}",
            r["pid"],
            if r["alive"] == json!(true) {
                "alive"
            } else {
                "dead"
            }
        );
    }
}
