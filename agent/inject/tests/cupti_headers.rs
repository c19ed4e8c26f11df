//! The record layouts the library decodes (`src/layout.rs`) against
//! CUPTI's real headers, from NVIDIA's `nvidia-cuda-cupti-cu12` and
//! `nvidia-cuda-cupti` wheels (fetched with pip, cached between runs;
//! skipped, saying so, only when the registry cannot be reached).
//!
//! For every wheel of every CUDA release the library claims, a C program
//! compiled against that release's `cupti_activity.h` prints `sizeof` and
//! `offsetof` of every field the decoder reads, for the structs of the
//! layout that `layout::for_version(CUPTI_API_VERSION)` picks. They must be
//! equal, and those structs must be the newest of their kind the header
//! declares: the ones that release's CUPTI writes. A claimed API version no
//! wheel shows fails `every_claimed_api_version_is_checked`.

#[path = "../../../ebpf/tests/common/wheels.rs"]
mod wheels;

use std::path::{Path, PathBuf};
use std::process::Command;

use strand_inject::layout::{self, Layout, kind};
use wheels::Wheel;

/// Every CUPTI wheel of the releases the library claims, with the
/// `CUPTI_API_VERSION` its header defines. (CUDA 12.7 was never released.)
const WHEELS: &[(&str, &str, u32)] = &[
    ("nvidia-cuda-cupti-cu12", "12.0.90", 18),
    ("nvidia-cuda-cupti-cu12", "12.0.146", 18),
    ("nvidia-cuda-cupti-cu12", "12.1.62", 18),
    ("nvidia-cuda-cupti-cu12", "12.1.105", 18),
    ("nvidia-cuda-cupti-cu12", "12.2.60", 20),
    ("nvidia-cuda-cupti-cu12", "12.2.131", 20),
    ("nvidia-cuda-cupti-cu12", "12.2.142", 20),
    ("nvidia-cuda-cupti-cu12", "12.3.52", 21),
    ("nvidia-cuda-cupti-cu12", "12.3.101", 21),
    ("nvidia-cuda-cupti-cu12", "12.4.99", 22),
    ("nvidia-cuda-cupti-cu12", "12.4.127", 22),
    ("nvidia-cuda-cupti-cu12", "12.5.39", 23),
    ("nvidia-cuda-cupti-cu12", "12.5.82", 23),
    ("nvidia-cuda-cupti-cu12", "12.6.37", 24),
    ("nvidia-cuda-cupti-cu12", "12.6.68", 24),
    ("nvidia-cuda-cupti-cu12", "12.6.80", 24),
    ("nvidia-cuda-cupti-cu12", "12.8.57", 26),
    ("nvidia-cuda-cupti-cu12", "12.8.90", 26),
    ("nvidia-cuda-cupti-cu12", "12.9.19", 27),
    ("nvidia-cuda-cupti-cu12", "12.9.79", 28),
    ("nvidia-cuda-cupti", "13.0.48", 130000),
    ("nvidia-cuda-cupti", "13.0.85", 130001),
    ("nvidia-cuda-cupti", "13.1.75", 130100),
    ("nvidia-cuda-cupti", "13.1.115", 130101),
    ("nvidia-cuda-cupti", "13.2.23", 130200),
    ("nvidia-cuda-cupti", "13.2.75", 130201),
    ("nvidia-cuda-cupti", "13.2.86", 130202),
    ("nvidia-cuda-cupti", "13.3.35", 130300),
    ("nvidia-cuda-cupti", "13.3.75", 130301),
    ("nvidia-cuda-cupti", "13.4.58", 130400),
    ("nvidia-cuda-cupti", "13.4.92", 130401),
];

/// The CUDA runtime wheel whose `cuda.h` the headers include, per major.
fn runtime_for(package: &str) -> (&'static str, &'static str) {
    if package.ends_with("-cu12") {
        ("nvidia-cuda-runtime-cu12", "12.9.79")
    } else {
        ("nvidia-cuda-runtime", "13.5.37")
    }
}

/// `(struct, field, offset)` for every field of `l` the decoder reads, and
/// `(struct, "sizeof", size)`; C names as in `cupti_activity.h`.
fn fields(l: &Layout) -> Vec<(&'static str, &'static str, usize)> {
    let k = l.kernel;
    let m = l.memcpy;
    let s = l.memset;
    let y = l.sync;
    let a = l.api;
    let d = l.device;
    let mut v = vec![
        (k.struct_name, "sizeof", k.size),
        (k.struct_name, "start", k.start),
        (k.struct_name, "end", k.end),
        (k.struct_name, "deviceId", k.device_id),
        (k.struct_name, "contextId", k.context_id),
        (k.struct_name, "streamId", k.stream_id),
        (k.struct_name, "gridX", k.grid[0]),
        (k.struct_name, "gridY", k.grid[1]),
        (k.struct_name, "gridZ", k.grid[2]),
        (k.struct_name, "blockX", k.block[0]),
        (k.struct_name, "blockY", k.block[1]),
        (k.struct_name, "blockZ", k.block[2]),
        (k.struct_name, "correlationId", k.correlation_id),
        (k.struct_name, "name", k.name),
        (m.struct_name, "sizeof", m.size),
        (m.struct_name, "copyKind", m.copy_kind),
        (m.struct_name, "srcKind", m.src_kind),
        (m.struct_name, "dstKind", m.dst_kind),
        (m.struct_name, "flags", m.flags),
        (m.struct_name, "bytes", m.bytes),
        (m.struct_name, "start", m.start),
        (m.struct_name, "end", m.end),
        (m.struct_name, "deviceId", m.device_id),
        (m.struct_name, "contextId", m.context_id),
        (m.struct_name, "streamId", m.stream_id),
        (m.struct_name, "correlationId", m.correlation_id),
        (s.struct_name, "sizeof", s.size),
        (s.struct_name, "value", s.value),
        (s.struct_name, "bytes", s.bytes),
        (s.struct_name, "start", s.start),
        (s.struct_name, "end", s.end),
        (s.struct_name, "deviceId", s.device_id),
        (s.struct_name, "contextId", s.context_id),
        (s.struct_name, "streamId", s.stream_id),
        (s.struct_name, "correlationId", s.correlation_id),
        (s.struct_name, "memoryKind", s.memory_kind),
        (y.struct_name, "sizeof", y.size),
        (y.struct_name, "type", y.sync_type),
        (y.struct_name, "start", y.start),
        (y.struct_name, "end", y.end),
        (y.struct_name, "correlationId", y.correlation_id),
        (y.struct_name, "contextId", y.context_id),
        (y.struct_name, "streamId", y.stream_id),
        (y.struct_name, "cudaEventId", y.cuda_event_id),
        (a.struct_name, "sizeof", a.size),
        (a.struct_name, "cbid", a.cbid),
        (a.struct_name, "start", a.start),
        (a.struct_name, "end", a.end),
        (a.struct_name, "processId", a.process_id),
        (a.struct_name, "threadId", a.thread_id),
        (a.struct_name, "correlationId", a.correlation_id),
        (a.struct_name, "returnValue", a.return_value),
        (d.struct_name, "sizeof", d.size),
        (d.struct_name, "id", d.id),
        (d.struct_name, "uuid", d.uuid),
        (d.struct_name, "name", d.name),
    ];
    if let Some(r) = y.return_value {
        v.push((y.struct_name, "returnValue", r));
    }
    v
}

/// The activity kinds the library enables or reads.
const KINDS: [(&str, u32); 8] = [
    ("MEMCPY", kind::MEMCPY),
    ("MEMSET", kind::MEMSET),
    ("KERNEL", kind::KERNEL),
    ("DRIVER", kind::DRIVER),
    ("RUNTIME", kind::RUNTIME),
    ("DEVICE", kind::DEVICE),
    ("CONCURRENT_KERNEL", kind::CONCURRENT_KERNEL),
    ("SYNCHRONIZATION", kind::SYNCHRONIZATION),
];

/// The newest `CUpti_Activity<family><n>` the header declares (no `n`: the first).
fn newest(header: &str, family: &str) -> Option<String> {
    let tag = format!("}} {family}");
    header
        .match_indices(&tag)
        .filter_map(|(i, _)| {
            let rest = &header[i + tag.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            rest[digits.len()..]
                .starts_with(';')
                .then(|| (digits.parse::<u32>().unwrap_or(0), format!("{family}{digits}")))
        })
        .max()
        .map(|(_, name)| name)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn headers(package: &str, version: &str) -> Option<PathBuf> {
    match wheels::fetch_members(package, version, "/include/") {
        Wheel::Ready(d) => Some(d),
        Wheel::Unreachable(why) => {
            wheels::skip(&format!("{package} {version}"), &why);
            None
        }
    }
}

fn dir_of(root: &Path, file: &str) -> PathBuf {
    let f = wheels::find(root, file).unwrap_or_else(|| panic!("no {file} under {}", root.display()));
    f.parent().expect("a directory").to_path_buf()
}

fn check_wheel(package: &str, version: &str, api_version: u32) {
    let Some(cupti) = headers(package, version) else { return };
    let (rt_package, rt_version) = runtime_for(package);
    let Some(runtime) = headers(rt_package, rt_version) else { return };
    let include = dir_of(&cupti, "cupti_activity.h");
    let activity = std::fs::read_to_string(include.join("cupti_activity.h")).expect("read cupti_activity.h");
    let version_h = std::fs::read_to_string(include.join("cupti_version.h")).expect("read cupti_version.h");
    let declared = version_h
        .lines()
        .find_map(|l| l.trim().strip_prefix("#define CUPTI_API_VERSION"))
        .and_then(|v| v.trim().parse::<u32>().ok())
        .expect("CUPTI_API_VERSION in cupti_version.h");
    assert_eq!(declared, api_version, "{package} {version}: CUPTI_API_VERSION");
    let l = layout::for_version(api_version)
        .unwrap_or_else(|| panic!("{package} {version} (API {api_version}) is claimed but has no layout"));

    // The structs the layout reads are the newest of their kind: what this CUPTI writes.
    for (family, name) in [
        ("CUpti_ActivityKernel", l.kernel.struct_name),
        ("CUpti_ActivityMemcpy", l.memcpy.struct_name),
        ("CUpti_ActivityMemset", l.memset.struct_name),
        ("CUpti_ActivitySynchronization", l.sync.struct_name),
        ("CUpti_ActivityDevice", l.device.struct_name),
        ("CUpti_ActivityAPI", l.api.struct_name),
    ] {
        assert_eq!(newest(&activity, family).as_deref(), Some(name), "{package} {version}: newest {family}");
    }

    // sizeof and offsetof as the compiler lays out the header's structs.
    let wanted = fields(l);
    let mut c =
        String::from("#include <stddef.h>\n#include <stdio.h>\n#include <cupti_activity.h>\nint main(void) {\n");
    for (st, field, _) in &wanted {
        let expr = if *field == "sizeof" { format!("sizeof({st})") } else { format!("offsetof({st}, {field})") };
        c.push_str(&format!("  printf(\"{st} {field} %zu\\n\", {expr});\n"));
    }
    for (name, _) in KINDS {
        c.push_str(&format!("  printf(\"kind {name} %d\\n\", (int)CUPTI_ACTIVITY_KIND_{name});\n"));
    }
    c.push_str("  return 0;\n}\n");
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("layout.c");
    std::fs::write(&src, c).expect("write layout.c");
    // builtin_types.h (runtime API types the callback header includes) needs
    // the CUDA compiler's headers; the activity records use none of its types.
    let stub = tmp.path().join("stub");
    std::fs::create_dir(&stub).expect("mkdir");
    std::fs::write(stub.join("builtin_types.h"), "/* not needed for the activity records */\n").expect("write stub");
    let bin = tmp.path().join("layout");
    run(Command::new("cc")
        .args(["-Wall", "-Werror", "-Wno-deprecated-declarations", "-I"])
        .arg(&stub)
        .arg("-I")
        .arg(&include)
        .arg("-I")
        .arg(dir_of(&runtime, "cuda.h"))
        .arg("-o")
        .arg(&bin)
        .arg(&src));
    let printed = run(&mut Command::new(&bin));
    let mut expected: Vec<String> = wanted.iter().map(|(s, f, v)| format!("{s} {f} {v}")).collect();
    expected.extend(KINDS.iter().map(|(n, v)| format!("kind {n} {v}")));
    let printed: Vec<&str> = printed.lines().collect();
    assert_eq!(printed, expected, "{package} {version} (layout {}): the header's layout differs", l.release);
    eprintln!("{package} {version}: API {api_version}, layout {} matches the header", l.release);
}

macro_rules! wheel_tests {
    ($($name:ident: $i:expr,)*) => {$(
        #[test]
        fn $name() {
            let (package, version, api) = WHEELS[$i];
            check_wheel(package, version, api);
        }
    )*};
}

wheel_tests! {
    cupti_12_0_90: 0, cupti_12_0_146: 1, cupti_12_1_62: 2, cupti_12_1_105: 3, cupti_12_2_60: 4,
    cupti_12_2_131: 5, cupti_12_2_142: 6, cupti_12_3_52: 7, cupti_12_3_101: 8, cupti_12_4_99: 9,
    cupti_12_4_127: 10, cupti_12_5_39: 11, cupti_12_5_82: 12, cupti_12_6_37: 13, cupti_12_6_68: 14,
    cupti_12_6_80: 15, cupti_12_8_57: 16, cupti_12_8_90: 17, cupti_12_9_19: 18, cupti_12_9_79: 19,
    cupti_13_0_48: 20, cupti_13_0_85: 21, cupti_13_1_75: 22, cupti_13_1_115: 23, cupti_13_2_23: 24,
    cupti_13_2_75: 25, cupti_13_2_86: 26, cupti_13_3_35: 27, cupti_13_3_75: 28, cupti_13_4_58: 29,
    cupti_13_4_92: 30,
}

/// The library claims exactly the API versions some wheel above shows: a
/// claim no header was checked against is a guess.
#[test]
fn every_claimed_api_version_is_checked() {
    assert_eq!(WHEELS.len(), 31, "one test per wheel above");
    let checked: Vec<u32> = WHEELS.iter().map(|w| w.2).collect();
    let unchecked: Vec<u32> =
        (0..200_000).filter(|v| layout::for_version(*v).is_some() && !checked.contains(v)).collect();
    assert!(unchecked.is_empty(), "claimed but never checked against a header: {unchecked:?}");
    for l in layout::ALL {
        assert!(checked.iter().any(|v| layout::for_version(*v) == Some(l)), "layout {} is never checked", l.release);
    }
}
