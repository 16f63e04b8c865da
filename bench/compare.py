"""Run the benchmark commands alternately, REPEAT times each, and report medians.

Called by bench/compare.sh (which installs the tools and builds the binaries). Each command
starts from the same generated database (in the page cache for all of them) and writes into a
fresh directory; wall time is measured here, peak RSS by GNU time -v.
"""
import os, platform, re, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNAPKEEP = os.path.join(ROOT, "target/release/snapkeep")
GEN = os.path.join(ROOT, "target/release/examples/gen_db")
REPEAT = int(os.environ.get("REPEAT", "3"))
SIZES = [int(s) for s in sys.argv[1:]] or [256, 1024]


def commands(db, out):
    env = {"BACKUP_DIR": out, "BACKUP_TZ": "UTC", "KEEP_LAST": "100"}
    x = os.path.join(out, "x.db")
    return [
        ("snapkeep backup --no-drive", [SNAPKEEP, "backup", "--no-drive", "--database", db], env, "snapkeep"),
        ("snapkeep backup --no-drive --no-vacuum", [SNAPKEEP, "backup", "--no-drive", "--no-vacuum", "--database", db], env, "snapkeep"),
        ("VACUUM INTO + gzip -6", ["sh", "-c", f"sqlite3 {db} \"VACUUM INTO '{x}'\" && gzip -6 {x}"], {}, x + ".gz"),
        ("VACUUM INTO + pigz -6", ["sh", "-c", f"sqlite3 {db} \"VACUUM INTO '{x}'\" && pigz -6 {x}"], {}, x + ".gz"),
    ]


def run_once(argv, extra_env, out):
    env = dict(os.environ, **extra_env)
    start = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-v"] + argv, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    if p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}): {' '.join(argv)}\n{p.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    return wall, rss


def output_size(out, product):
    if product == "snapkeep":
        files = [f for f in os.listdir(out) if f.startswith("backup-") and f.endswith(".db.gz")]
        assert len(files) == 1, files
        return os.path.getsize(os.path.join(out, files[0]))
    return os.path.getsize(product)


def bench(size_mib):
    work = tempfile.mkdtemp(prefix=f"snapkeep-bench-{size_mib}-", dir=os.environ.get("BENCH_DIR", "/tmp"))
    db = os.path.join(work, "app.db")
    gen = subprocess.run([GEN, db, str(size_mib), "42"], check=True, capture_output=True, text=True)
    print(gen.stdout.strip(), flush=True)
    names = [c[0] for c in commands(db, work)]
    results = {n: {"wall": [], "rss": [], "bytes": []} for n in names}
    out = os.path.join(work, "out")
    for r in range(REPEAT):
        for name, argv, env, product in commands(db, out):
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            wall, rss = run_once(argv, env, out)
            results[name]["wall"].append(wall)
            results[name]["rss"].append(rss)
            results[name]["bytes"].append(output_size(out, product))
            print(f"  run {r + 1}/{REPEAT} {name}: {wall:.2f} s, {rss / 1024:.1f} MiB peak", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return os.path.getsize(db) if os.path.exists(db) else None, results


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


def main():
    lines = ["# Benchmarks", "", f"Machine: {machine()}.", "",
             f"Command: `bench/compare.sh {' '.join(map(str, SIZES))}` (REPEAT={REPEAT}, commands alternated, medians).",
             "Ratio = the command's median wall time / `snapkeep backup --no-drive`'s (above 1: snapkeep is faster).", ""]
    for size in SIZES:
        _, results = bench(size)
        base = statistics.median(results["snapkeep backup --no-drive"]["wall"])
        gz = statistics.median(results["VACUUM INTO + gzip -6"]["bytes"])
        lines += [f"## Generated database of {size} MiB", "",
                  "| command | median wall | ratio | output | vs gzip -6 output | peak RSS |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, r in results.items():
            wall = statistics.median(r["wall"])
            size_b = statistics.median(r["bytes"])
            lines.append(f"| `{name}` | {wall:.2f} s | {wall / base:.2f}× | {size_b / 2**20:.1f} MiB | "
                         f"{(size_b / gz - 1) * 100:+.1f}% | {max(r['rss']) / 1024:.1f} MiB |")
        lines.append("")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(ROOT, "BENCHMARKS.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
