#!/usr/bin/env python3
"""Side-by-side benchmark: this project's server against the reference Node peer.

The Node peer is ``bench/peer_node.mjs``: a plain Node.js ``http`` server streaming the same
frames.

Job: for each workload and each repeat, start one server at a time on a fresh loopback port,
wait until it accepts, run ``bench/loadgen.py`` against it as a subprocess (with
``--server-pid``), stop the server (SIGTERM, then SIGKILL after a timeout), and finally print the
medians and the ours/node ratios as Markdown tables, plus the full JSON.

Standard library only. Every wait is bounded (server start, load run, server stop). Server and
load generator are pinned to different CPUs when at least two are available.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

__all__ = ["main"]

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
LOADGEN = os.path.join(BENCH_DIR, "loadgen.py")
DEFAULT_NODE_PEER = "bench/peer_node.mjs"  # relative to the repo root

# Plain words for the replies file: no punctuation, joined by single spaces.
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
         "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()

STANDARD_WORKLOADS = ("1000", "5000", "10000", "zero-1", "zero-50")

# (key in the loadgen report, label, format, applies to zero-delay workloads)
METRICS = [
    ("completed", "streams completed", "count", True),
    ("ttfb_p50", "TTFB p50 (ms)", "ms", True),
    ("ttfb_p99", "TTFB p99 (ms)", "ms", True),
    ("ierr_p50", "chunk-interval error p50 (ms)", "ms", False),
    ("ierr_p99", "chunk-interval error p99 (ms)", "ms", False),
    ("frames_per_s", "frames/s", "int", True),
    ("mb_per_s", "MB/s received", "f2", True),
    ("wall_s", "run wall time (s)", "f2", True),
    ("rss_max_mb", "server RSS max (MB)", "f1", True),
    ("hwm_mb", "server VmHWM (MB)", "f1", True),
    ("threads_max", "server threads max", "int", True),
    ("server_cpu_s", "server CPU (s)", "f2", True),
    ("client_cpu_util", "load generator CPU (share of a core)", "f2", True),
    ("listen_drops", "SYNs dropped, accept queue full", "int", True),
]


def workload_spec(name: str, args: argparse.Namespace) -> dict:
    """'N': N concurrent streams of --chunks chunks at --delay, opened at once.
    'zero-N': N concurrent streams of --zero-chunks chunks at zero delay, each slot opening
    streams back to back (loadgen --rounds) until about --zero-frames frames were sent."""
    if name.startswith("zero-"):
        n, chunks, delay = int(name[5:]), args.zero_chunks, 0.0
        if n <= 0 or chunks <= 0:
            raise ValueError(name)
        rounds = max(1, -(-args.zero_frames // (n * (chunks + 2))))
        title = (f"{n} concurrent stream{'s' if n != 1 else ''} x {chunks} chunks, zero delay "
                 f"({rounds} back to back per stream slot)")
    else:
        n, chunks, delay, rounds = int(name), args.chunks, args.delay, 1
        title = f"{n} concurrent streams x {chunks} chunks at {delay * 1000:g} ms"
    if n <= 0 or chunks <= 0:
        raise ValueError(name)
    return {"name": name, "streams": n, "rounds": rounds, "chunks": chunks, "delay": delay,
            "title": title,
            "expect_frames": chunks + 2}  # chunk frames + finish_reason frame + [DONE]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_accepting(port: int, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # bounded by timeout
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def stop(proc: subprocess.Popen, timeout: float) -> dict:
    if proc.poll() is not None:
        return {"stopped_by": "already exited", "returncode": proc.returncode}
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    try:
        proc.wait(timeout)
        return {"stopped_by": "SIGTERM", "returncode": proc.returncode,
                "stop_s": round(time.monotonic() - t0, 3)}
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return {"stopped_by": f"SIGKILL after {timeout:g} s", "returncode": proc.returncode}


def preexec(cpu):
    """Child setup: own process group, RLIMIT_NOFILE soft = hard, optional CPU pinning."""
    def fn() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            except (ValueError, OSError):
                pass
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
    return fn


def tail(path: str, n: int = 15) -> str:
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def run_one(server: str, spec: dict, args, ctx: dict, rep: int) -> dict:
    port = free_port() if not args.port else args.port
    delay = f"{spec['delay']:g}"
    if server == "ours":
        cmd = [args.python, "main.py", "--port", str(port), "--delay", delay,
               "--log-level", "warning", "--replies", ctx["replies"][spec["chunks"]]]
    else:  # the peer's --chunks counts word frames; its role frame is the first chunk
        cmd = [ctx["node"], ctx["node_peer"], "--port", str(port), "--delay", delay,
               "--chunks", str(spec["chunks"] - 1)]
    log_path = os.path.join(ctx["tmp"], f"{server}-{spec['name']}-{rep}.log")
    out_path = os.path.join(ctx["tmp"], f"{server}-{spec['name']}-{rep}.json")
    rec = {"server": server, "repeat": rep, "server_command": shlex.join(cmd), "ok": False}
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, preexec_fn=preexec(ctx["server_cpu"]))
    try:
        if not wait_accepting(port, proc, args.start_timeout):
            rec["error"] = (f"server did not accept on port {port} within {args.start_timeout:g} s"
                            f" (exit code {proc.poll()}); log tail:\n{tail(log_path)}")
            return rec
        lg_cmd = [args.python, LOADGEN, "--port", str(port), "--streams", str(spec["streams"]),
                  "--delay", delay, "--server-pid", str(proc.pid), "--timeout", f"{args.timeout:g}",
                  "--expect-frames", str(spec["expect_frames"]), "--json", out_path]
        if spec["rounds"] > 1:
            lg_cmd += ["--rounds", str(spec["rounds"])]
        if args.ramp:
            lg_cmd += ["--ramp", f"{args.ramp:g}"]
        if args.timeline:
            lg_cmd += ["--timeline"]
        rec["loadgen_command"] = shlex.join(lg_cmd)
        try:
            done = subprocess.run(lg_cmd, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=args.timeout + 60,
                                  preexec_fn=preexec(ctx["client_cpu"]))
        except subprocess.TimeoutExpired:
            rec["error"] = "load generator did not finish in time"
            return rec
        rec["loadgen_summary"] = (done.stdout.strip().splitlines() or [""])[0]
        try:
            with open(out_path, encoding="utf-8") as f:
                rec["report"] = json.load(f)
            rec["ok"] = True
        except (OSError, ValueError):
            rec["error"] = f"no report from the load generator: {done.stderr.strip()[-2000:]}"
        if proc.poll() is not None:
            rec["server_exited_during_run"] = proc.returncode
    finally:
        rec["stop"] = stop(proc, args.stop_timeout)
        rec["server_log_tail"] = tail(log_path, 8)
    return rec


def flatten(r: dict) -> dict:
    s = r.get("server") or {}
    return {
        "completed": r["streams_completed"],
        "ttfb_p50": r["ttfb_ms"]["p50"], "ttfb_p99": r["ttfb_ms"]["p99"],
        "ierr_p50": r["interval_error_ms"]["p50"], "ierr_p99": r["interval_error_ms"]["p99"],
        "frames_per_s": r["frames_per_s"], "mb_per_s": r["bytes_per_s"] / 1e6,
        "wall_s": r["wall_s"],
        "rss_max_mb": s.get("rss_max_mb"), "hwm_mb": s.get("hwm_mb"),
        "threads_max": s.get("threads_max"), "server_cpu_s": s.get("cpu_s"),
        "client_cpu_util": r["client"]["cpu_util"],
        "listen_drops": (r.get("kernel") or {}).get("listen_drops"),
    }


def medians(runs: list) -> dict:
    flat = [flatten(x["report"]) for x in runs if x.get("ok")]
    out = {}
    for key, *_ in METRICS:
        vals = [f[key] for f in flat if f.get(key) is not None]
        out[key] = statistics.median(vals) if vals else None
    out["runs_ok"] = len(flat)
    out["runs"] = len(runs)
    errors: dict = {}
    mismatch = 0
    for x in runs:
        if x.get("ok"):
            for k, v in x["report"]["error_details"].items():
                errors[k] = errors.get(k, 0) + v
            mismatch += x["report"].get("frame_count_mismatch") or 0
    out["errors_all_runs"] = errors
    out["frame_count_mismatch_all_runs"] = mismatch
    out["client_bound_runs"] = sum(1 for x in runs if x.get("ok")
                                   and x["report"]["client"]["client_bound"])
    return out


def fmt(v, kind: str) -> str:
    if v is None:
        return "-"
    if kind == "ms":
        return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"
    if kind == "int" or kind == "count":
        return f"{v:,.0f}"
    if kind == "f1":
        return f"{v:,.1f}"
    return f"{v:,.2f}"


def ratio(a, b) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}"


def markdown(results: list, servers: list, repeat: int) -> str:
    lines = []
    for w in results:
        spec = w["spec"]
        med = w["median"]
        lines.append(f"### {spec['title']} (median of {repeat})")
        lines.append("")
        cols = [s for s in servers if s in med]
        hdr = "| metric | " + " | ".join(cols)
        if "ours" in cols and "node" in cols:
            hdr += " | ours/node"
        lines.append(hdr + " |")
        lines.append("|---|" + "---:|" * (len(cols) + (1 if len(cols) == 2 else 0)))
        for key, label, kind, zero_ok in METRICS:
            if spec["delay"] == 0 and not zero_ok:
                continue
            cells = []
            for s in cols:
                v = med[s].get(key)
                cells.append(f"{fmt(v, kind)}/{spec['streams'] * spec['rounds']:,}"
                             if kind == "count" and v is not None
                             else fmt(v, kind))
            row = f"| {label} | " + " | ".join(cells)
            if len(cols) == 2:
                row += " | " + ratio(med["ours"].get(key), med["node"].get(key))
            lines.append(row + " |")
        for s in cols:
            m = med[s]
            notes = []
            if m["runs_ok"] < m["runs"]:
                notes.append(f"{m['runs'] - m['runs_ok']} of {m['runs']} runs produced no report")
            if m["errors_all_runs"]:
                notes.append("errors over all runs: " + ", ".join(
                    f"{k} {v}" for k, v in sorted(m["errors_all_runs"].items())))
            if m["frame_count_mismatch_all_runs"]:
                notes.append(f"{m['frame_count_mismatch_all_runs']} completed streams did not carry "
                             f"{spec['expect_frames']} frames")
            if m["client_bound_runs"]:
                notes.append(f"{m['client_bound_runs']} runs flagged client_bound")
            if notes:
                lines.append("")
                lines.append(f"- {s}: " + "; ".join(notes))
        lines.append("")
    return "\n".join(lines)


def read_first(path: str, default: str = "?") -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return default


def machine_info(node) -> dict:
    model = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    node_version = None
    if node:
        try:
            node_version = subprocess.run([node, "--version"], capture_output=True, text=True,
                                          timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    return {
        "nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(), "model_name": model,
        "python": sys.version.split()[0], "node": node_version,
        "kernel": platform.release(),
        "somaxconn": read_first("/proc/sys/net/core/somaxconn"),
        "tcp_tw_reuse": read_first("/proc/sys/net/ipv4/tcp_tw_reuse"),
        "ip_local_port_range": " ".join(read_first("/proc/sys/net/ipv4/ip_local_port_range").split()),
        "nofile_hard": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
    }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--workloads", default=",".join(STANDARD_WORKLOADS),
                   help="comma-separated: N (N concurrent streams of --chunks chunks at --delay) "
                        "or zero-N (N streams of --zero-chunks chunks at zero delay)")
    p.add_argument("--repeat", type=int, default=3, help="runs per workload and server")
    p.add_argument("--servers", default="ours,node", help="ours, node or both")
    p.add_argument("--node-peer", default=DEFAULT_NODE_PEER,
                   help="path of the Node peer (relative paths are relative to the repo root); "
                        "an error if missing, unless --servers ours")
    p.add_argument("--chunks", type=int, default=20, help="chunks per stream in paced workloads")
    p.add_argument("--delay", type=float, default=0.05, help="seconds between chunks (paced)")
    p.add_argument("--zero-chunks", type=int, default=2000, help="chunks per zero-delay stream")
    p.add_argument("--zero-frames", type=int, default=400_000,
                   help="frames a zero-delay workload should total (sets loadgen --rounds)")
    p.add_argument("--timeout", type=float, default=120.0, help="load generator deadline per run, s")
    p.add_argument("--ramp", type=float, default=0.0, help="passed to loadgen --ramp (0: burst)")
    p.add_argument("--start-timeout", type=float, default=15.0, help="s to wait for the port")
    p.add_argument("--stop-timeout", type=float, default=5.0, help="s between SIGTERM and SIGKILL")
    p.add_argument("--pause", type=float, default=1.0, help="s to idle between runs")
    p.add_argument("--timeline", action="store_true",
                   help="keep loadgen's per-sample timeline (open streams, CPU, RSS) in the JSON")
    p.add_argument("--port", type=int, default=0, help="fixed server port (0: a free one per run)")
    p.add_argument("--no-pin", action="store_true", help="don't pin server and load generator")
    p.add_argument("--python", default=sys.executable, help="interpreter for main.py and loadgen")
    p.add_argument("--json", default=None, help="write the JSON here instead of printing it")
    a = p.parse_args(argv)
    if a.repeat < 1:
        p.error("--repeat must be >= 1")
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    command = shlex.join([os.path.basename(sys.executable)] + (sys.argv if argv is None
                                                               else [sys.argv[0]] + list(argv)))
    try:
        specs = [workload_spec(w.strip(), args) for w in args.workloads.split(",") if w.strip()]
    except ValueError as exc:
        print(f"compare: bad workload {exc}", file=sys.stderr)
        return 2
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if not specs or any(s not in ("ours", "node") for s in servers) or not servers:
        print("compare: --servers takes ours and/or node; --workloads must not be empty",
              file=sys.stderr)
        return 2

    node = shutil.which("node")
    node_peer = args.node_peer if os.path.isabs(args.node_peer) else os.path.normpath(
        os.path.join(REPO_ROOT, args.node_peer))
    skipped = {}
    if "node" in servers and (node is None or not os.path.isfile(node_peer)):
        # Fail now rather than spend minutes on a one-sided run nobody asked for.
        why = ("node is not on PATH" if node is None
               else f"--node-peer {args.node_peer} does not exist" + (
                   "" if os.path.isabs(args.node_peer) else " (relative to the repo root)"))
        print(f"compare: cannot run the Node peer: {why} "
              f"(pass --servers ours to benchmark this server alone)", file=sys.stderr)
        return 2
    if "ours" in servers and not os.path.isfile(os.path.join(REPO_ROOT, "main.py")):
        skipped["ours"] = "main.py does not exist"
        servers.remove("ours")
        print("compare: skipping our server: main.py does not exist", file=sys.stderr)
    if not servers:
        print("compare: nothing to run", file=sys.stderr)
        return 2

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2 and not args.no_pin:
        server_cpu, client_cpu = cpus[0], cpus[1]
        pinning = (f"server pinned to CPU {server_cpu}, load generator to CPU {client_cpu} "
                   f"(os.sched_setaffinity in the child before exec)")
    else:
        server_cpu = client_cpu = None
        pinning = ("not pinned (--no-pin)" if args.no_pin
                   else f"not pinned: only {len(cpus)} CPU available")

    info = machine_info(node)
    with tempfile.TemporaryDirectory(prefix="lb-bench-") as tmp:
        replies = {}
        for spec in specs:  # one reply of chunks - 1 words: the role frame makes the rest
            k = spec["chunks"]
            if k not in replies:
                path = os.path.join(tmp, f"replies-{k}.json")
                words = [WORDS[i % len(WORDS)] for i in range(k - 1)]
                with open(path, "w", encoding="utf-8") as f:
                    json.dump([" ".join(words)], f)
                replies[k] = path
        ctx = {"tmp": tmp, "replies": replies, "node": node, "node_peer": node_peer,
               "server_cpu": server_cpu, "client_cpu": client_cpu}
        print(f"compare: {len(specs)} workloads x {args.repeat} repeats x {len(servers)} servers; "
              f"{pinning}", file=sys.stderr)
        results = []
        for spec in specs:
            runs = {s: [] for s in servers}
            for rep in range(args.repeat):
                order = servers if rep % 2 == 0 else list(reversed(servers))
                for server in order:
                    rec = run_one(server, spec, args, ctx, rep)
                    runs[server].append(rec)
                    status = rec.get("loadgen_summary") or rec.get("error", "")
                    print(f"compare: [{spec['name']} #{rep + 1} {server}] {status}",
                          file=sys.stderr)
                    time.sleep(args.pause)
            results.append({"spec": spec, "runs": runs,
                             "median": {s: medians(runs[s]) for s in servers}})
        for w in results:  # the replies files live in tmp: record their shape, not their path
            for recs in w["runs"].values():
                for rec in recs:
                    rec["server_command"] = rec["server_command"].replace(tmp, "$TMP")

    doc = {
        "tool": "bench/compare.py",
        "command": command,
        "machine": info,
        "pinning": pinning,
        "skipped": skipped,
        "server_commands": {
            "ours": f"{os.path.basename(args.python)} main.py --port P --delay D --log-level warning "
                    "--replies FILE  (FILE: one reply of chunks-1 plain words)",
            "node": f"node {args.node_peer} --port P --delay D --chunks N-1  "
                    "(N-1 word frames after the role frame)",
        },
        "workloads": results,
    }
    out = []
    out.append("## Streaming benchmark: this server (ours) vs the Node peer (node)")
    out.append("")
    out.append(f"Command: `{command}`")
    out.append("")
    out.append(f"Machine: {info['nproc']} CPUs (nproc), {info['model_name']}; "
               f"Python {info['python']}; Node {info['node'] or '-'}; Linux {info['kernel']}; "
               f"net.core.somaxconn {info['somaxconn']}")
    out.append("")
    out.append(f"Pinning: {pinning}. One server at a time, a fresh process per run; "
               "ratios are ours/node (lower is better for times, errors, memory and CPU; "
               "higher is better for frames/s and MB/s).")
    if skipped:
        out.append("")
        out.append("Skipped: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()))
    out.append("")
    out.append(markdown(results, ["ours", "node"], args.repeat))
    text = "\n".join(out)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        print(f"JSON: {args.json}")
    else:
        print("```json")
        print(json.dumps(doc, indent=2))
        print("```")
    sys.stdout.flush()
    ok = all(x.get("ok") for w in results for recs in w["runs"].values() for x in recs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
