#!/usr/bin/env python3
"""Helpers shared by the GPU checks of bench/gpu/validate.sh (standard library,
plus pyarrow where Parquet is read: the device image has it, CI installs it).

As a command:
  common.py free-port                      print a free loopback TCP port
  common.py wait-http URL SECONDS          exit 0 once URL answers, 1 after SECONDS
  common.py scrape URL FILE                save the agent's /metrics text to FILE
  common.py libs                           print NAME=PATH for the libraries torch loads
  common.py sample PID FILE [PERIOD]       sample a process's CPU time, RSS and
                                           nvidia-smi's compute processes until it exits
  common.py prime-ebpf URL SECONDS         map torch's CUDA/NCCL libraries in this
                                           process until the agent has probed them
  common.py carry-size ROOT PACK           does the working tree plus PACK fit in
                                           one device call (64 MiB)? exit 1 if not
"""
import glob
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request


# ---- results: one JSON file per check, merged by report.py ----------------

class Result:
    """What one check found: criteria (measured against a target), numbers, notes."""

    def __init__(self, check):
        self.check = check
        self.criteria = []
        self.numbers = {}
        self.notes = []
        self.error = None

    def criterion(self, what, ok, value=None, target=None):
        self.criteria.append({"what": what, "ok": bool(ok), "value": value, "target": target})
        print(f"  {'PASS' if ok else 'FAIL'}  {what}: {value} (target {target})", flush=True)
        return ok

    def note(self, text):
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def status(self):
        if self.error:
            return "error"
        if not self.criteria:
            return "no result"
        return "pass" if all(c["ok"] for c in self.criteria) else "fail"

    def write(self, path):
        doc = {"check": self.check, "status": self.status(), "criteria": self.criteria,
               "numbers": self.numbers, "notes": self.notes, "error": self.error}
        with open(path, "w") as f:
            json.dump(doc, f, indent=1, default=str)
        print(f"{self.check}: {doc['status']}", flush=True)


def run_check(check, out_path, body):
    """Runs body(result); an exception becomes status 'error' with its text, never a crash."""
    r = Result(check)
    try:
        body(r)
    except Exception as e:  # the report must still be written
        import traceback
        traceback.print_exc()
        r.error = f"{type(e).__name__}: {e}"
    r.write(out_path)
    return r


# ---- reading what the agent wrote ----------------------------------------

def read_table(data_dir, table, columns=None):
    """Rows of every committed Parquet batch of `table` under an agent's data dir,
    times as int64 UTC nanoseconds whatever the schema version (schema 2
    types them `timestamp[ns, UTC]`, schema 1 as int64)."""
    import pyarrow as pa  # imported here: only the analysers need it
    import pyarrow.parquet as pq
    rows = []
    for f in sorted(glob.glob(os.path.join(data_dir, table, "**", "*.parquet"), recursive=True)):
        t = pq.read_table(f, columns=columns, partitioning=None)
        cols = [c.cast(pa.int64()) if pa.types.is_timestamp(c.type) else c for c in t.columns]
        rows += pa.Table.from_arrays(cols, names=t.column_names).to_pylist()
    return rows


def unsigned64(v):
    """Parquet stores comm hashes and pointers as signed i64; NCCL prints them unsigned."""
    return None if v is None else v & ((1 << 64) - 1)


METRIC = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)')


def metrics(text):
    """OpenMetrics text -> list of (name, labels dict, value)."""
    out = []
    for line in text.splitlines():
        m = METRIC.match(line)
        if not m or line.startswith("#"):
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        try:
            out.append((m.group(1), labels, float(m.group(4))))
        except ValueError:
            continue
    return out


def metric_sum(text, name, **match):
    return sum(v for n, l, v in metrics(text) if n == name and all(l.get(k) == str(x) for k, x in match.items()))


def http_get(url, timeout=3.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode("utf-8", "replace")


# ---- the GPU libraries torch uses ----------------------------------------

def torch_libs():
    """Paths of libnccl, libcupti, libnvrtc, libcudart as this Python's torch
    loads or ships them: strand must probe and load the same files."""
    import torch
    torch.cuda.init()
    found = {}
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            for name in ("libnccl.so", "libcupti.so", "libnvrtc.so", "libcudart.so", "libcuda.so"):
                if os.path.basename(path).startswith(name):
                    found.setdefault(name.split(".")[0], path)
    # Libraries torch has not loaded yet: look in the nvidia-* wheels beside it.
    roots = []
    try:
        import nvidia
        roots += list(nvidia.__path__)
    except ImportError:
        pass
    roots += ["/usr/local/cuda/lib64", "/usr/local/cuda/extras/CUPTI/lib64"]
    for name in ("libcupti", "libnvrtc", "libnccl", "libcudart"):
        if name in found:
            continue
        hits = sorted(p for r in roots for p in glob.glob(os.path.join(r, "**", name + ".so*"), recursive=True)
                      if "builtins" not in p and "alt" not in os.path.basename(p))
        if hits:
            found[name] = hits[0]
    return found


def prime_ebpf(url, seconds):
    """Maps torch's libraries here and waits until the agent has probed them,
    so that the workloads after this are traced from their first NCCL call
    (the agent rescans /proc every 5 s; a probed file is probed for every process)."""
    libs = torch_libs()
    deadline = time.time() + seconds
    n = 0
    while time.time() < deadline:
        try:
            n = metric_sum(http_get(url), "strand_ebpf_library_files")
        except OSError:
            pass
        if n >= 2:  # libnccl and libcudart at least (libcuda too, once cuInit ran)
            break
        time.sleep(0.5)
    print(json.dumps({"library_files": n, "libs": libs}))
    return 0 if n >= 1 else 1


# ---- sampling the agent's cost --------------------------------------------

def proc_cpu_rss(pid):
    """(user+system CPU seconds, RSS bytes, peak RSS bytes) of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return ticks / os.sysconf("SC_CLK_TCK"), rss, hwm


def gpu_apps():
    """nvidia-smi's compute processes: {pid: used MiB}; {} without nvidia-smi."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    apps = {}
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit():
            apps[int(parts[0])] = float(parts[1]) if parts[1].replace(".", "").isdigit() else None
    return apps


def sample(pid, path, period=1.0):
    """One JSON line per period until the process is gone (or this one is killed)."""
    with open(path, "a") as f:
        while True:
            try:
                cpu, rss, hwm = proc_cpu_rss(pid)
            except (OSError, IndexError, ValueError):
                return 0
            apps = gpu_apps()
            f.write(json.dumps({"t_ns": time.time_ns(), "cpu_s": cpu, "rss": rss, "hwm": hwm,
                                "on_gpu_mib": apps.get(pid), "listed_by_nvidia_smi": pid in apps}) + "\n")
            f.flush()
            time.sleep(period)


# ---- what one device call carries ------------------------------------------

CARRY_LIMIT = 64 << 20
# Room kept for the release pack when the folder at hand is not one (the
# dry-run test links cargo's debug binaries, which never travel): a few MiB
# above what pack.sh measured for the release folder (docs/gpu-validation.md).
PACK_RESERVE = 40 << 20


def tree_bytes(root):
    """Bytes of what a device call sends besides `carry`: tracked files and
    untracked files git does not ignore (plus shared/ when git ignores it).
    Without git (on the device) the copy as it arrived, carried paths included."""
    try:
        out = subprocess.run(["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return dir_bytes(root), "the copy on this machine, carried folder included"
    total = 0
    for name in set(out.decode("utf-8", "replace").split("\0")):
        p = os.path.join(root, name)
        if name and os.path.isfile(p) and not os.path.islink(p):
            total += os.path.getsize(p)
    shared = os.path.join(root, "shared")
    if os.path.isdir(shared) and subprocess.run(["git", "-C", root, "check-ignore", "-q", "shared"]).returncode == 0:
        total += dir_bytes(shared)
    return total, "git ls-files, tracked and untracked-not-ignored"


def dir_bytes(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            p = os.path.join(d, f)
            if os.path.isfile(p):  # follows links: what the link's target weighs
                total += os.path.getsize(p)
    return total


def carry_size(root, pack):
    """One line saying whether tree + pack fit in a device call; True if they do."""
    limit = int(os.environ.get("STRAND_CARRY_LIMIT_BYTES", CARRY_LIMIT))
    tree, how = tree_bytes(root)
    mib = lambda b: f"{b / 2**20:.1f} MiB"
    try:
        release = open(os.path.join(pack, "PACK")).readline().split() == ["profile", "release"]
    except OSError:
        release = False
    size = dir_bytes(pack) if os.path.isdir(pack) else 0
    if "carried folder included" in how:
        total, parts = tree, f"repository copy {mib(tree)} ({how})"
    elif release:
        total, parts = tree + size, f"working tree {mib(tree)} ({how}) + release pack {mib(size)}"
    else:
        total = tree + PACK_RESERVE
        parts = (f"working tree {mib(tree)} ({how}) + {mib(PACK_RESERVE)} kept for the release pack "
                 f"(the folder here, {mib(size)}, is not a release pack and never travels; pack.sh measures that one)")
    ok = total <= limit
    print(f"carry: {parts} = {mib(total)} of {mib(limit)}: {'fits' if ok else 'TOO LARGE'}")
    return ok


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "free-port":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            print(s.getsockname()[1])
        return 0
    if cmd == "wait-http":
        deadline = time.time() + float(argv[3])
        while time.time() < deadline:
            try:
                http_get(argv[2], timeout=1)
                return 0
            except OSError:
                time.sleep(0.2)
        return 1
    if cmd == "scrape":
        try:
            text = http_get(argv[2])
        except OSError as e:
            text = f"# scrape failed: {e}\n"
        with open(argv[3], "w") as f:
            f.write(text)
        return 0
    if cmd == "libs":
        import torch
        libs = torch_libs()
        print(f"torch: {torch.__version__} CUDA {torch.version.cuda} NCCL {'.'.join(map(str, torch.cuda.nccl.version()))}"
              f" on {torch.cuda.get_device_name(0)}", file=sys.stderr)
        for k, v in libs.items():
            print(f"{k.upper()}={v}")
        return 0
    if cmd == "sample":
        return sample(int(argv[2]), argv[3], float(argv[4]) if len(argv) > 4 else 1.0)
    if cmd == "prime-ebpf":
        return prime_ebpf(argv[2], float(argv[3]))
    if cmd == "carry-size":
        return 0 if carry_size(argv[2], argv[3]) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
