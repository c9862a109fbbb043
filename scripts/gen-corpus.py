#!/usr/bin/env python3
"""Deterministic benchmark corpus for Ferry (scripts/bench-repo.sh).

    gen-corpus.py DIR [--size-mib N] [--seed S]       generate (DIR must not exist)
    gen-corpus.py DIR --mutate PERCENT [--seed S]     change PERCENT % of the files in place

The corpus looks like what Ferry backs up: many log files made of repetitive lines
(timestamps, hosts, a few hundred message templates), small config files, and some
incompressible binaries (about 25 % of the bytes). The same seed and size always produce
the same bytes. The mutation picks every (100/PERCENT)-th file in sorted order: logs get
lines appended, configs get one value changed, binaries get 64 KiB overwritten.
"""

import argparse
import os
import random
import sys

MIB = 1 << 20

HOSTS = [f"host{i:02d}.lan" for i in range(24)]
SERVICES = ["sshd", "nginx", "postfix/smtpd", "cron", "kernel", "systemd", "dockerd",
            "named", "dhcpd", "smbd", "zfs", "backupd", "haproxy", "mariadbd"]
WORDS = ("accepted connection from session opened closed for user root admin www-data "
         "request GET POST /api/v1/status /index.html 200 404 500 timeout retry upstream "
         "disk usage warning error info debug queue flushed message delivered rejected "
         "lease renewed address interface eth0 br0 link up down temperature fan speed").split()


def templates(rng):
    out = []
    for _ in range(400):
        n = rng.randint(5, 14)
        out.append(" ".join(rng.choice(WORDS) for _ in range(n)))
    return out


def log_bytes(rng, tpls, size, start_ts):
    """size bytes of syslog-like lines (last line cut to size)."""
    parts = []
    total = 0
    ts = start_ts
    # Batch the random choices: one call per few thousand lines keeps Python fast.
    while total < size:
        batch = rng.choices(tpls, k=2000)
        hosts = rng.choices(HOSTS, k=2000)
        svcs = rng.choices(SERVICES, k=2000)
        pids = rng.choices(range(100, 40000), k=2000)
        lines = []
        for t, h, s, p in zip(batch, hosts, svcs, pids):
            ts += 1
            d, r = divmod(ts, 86400)
            hh, r = divmod(r, 3600)
            mm, ss = divmod(r, 60)
            lines.append(f"2026-{1 + d // 28 % 12:02d}-{1 + d % 28:02d}T{hh:02d}:{mm:02d}:{ss:02d}Z "
                         f"{h} {s}[{p}]: {t}\n")
        chunk = "".join(lines).encode()
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)[:size], ts


def config_bytes(rng, size):
    lines = []
    total = 0
    section = 0
    while total < size:
        if rng.random() < 0.1:
            section += 1
            line = f"\n[section{section}]\n"
        else:
            key = "_".join(rng.choice(WORDS) for _ in range(2))
            val = rng.choice([str(rng.randint(0, 65535)), rng.choice(WORDS), "true", "false",
                              f"/etc/{rng.choice(WORDS)}/{rng.choice(WORDS)}.conf"])
            line = f"{key} = {val}\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()[:size]


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    # Fixed mtimes make the corpus identical between runs (the mutation sets a newer one).
    os.utime(path, (1767225600, 1767225600))


def generate(root, size_mib, seed):
    if os.path.exists(root):
        sys.exit(f"gen-corpus: {root} already exists")
    rng = random.Random(seed)
    tpls = templates(rng)
    target = size_mib * MIB
    log_target = target * 65 // 100
    cfg_target = target * 10 // 100
    bin_target = target - log_target - cfg_target
    files = 0
    # Logs: 1-4 MiB each (rotated logs), spread over hosts.
    done, ts, i = 0, 0, 0
    while done < log_target:
        size = min(rng.randint(MIB // 4, 4 * MIB), log_target - done)
        data, ts = log_bytes(rng, tpls, size, ts)
        host = HOSTS[i % len(HOSTS)]
        write(os.path.join(root, "logs", host, f"{SERVICES[i % len(SERVICES)].replace('/', '-')}.log.{i}"), data)
        done += size
        i += 1
        files += 1
    # Configs: small files, 512 B - 64 KiB.
    done, i = 0, 0
    while done < cfg_target:
        size = min(rng.randint(512, 64 * 1024), cfg_target - done)
        write(os.path.join(root, "etc", f"d{i % 40:02d}", f"service{i}.conf"), config_bytes(rng, size))
        done += size
        i += 1
        files += 1
    # Incompressible binaries: 1-32 MiB.
    done, i = 0, 0
    while done < bin_target:
        size = min(rng.randint(MIB, 32 * MIB), bin_target - done)
        write(os.path.join(root, "bin", f"blob{i:03d}.bin"), rng.randbytes(size))
        done += size
        i += 1
        files += 1
    print(f"gen-corpus: {files} files, {target / MIB:.0f} MiB in {root}")


def mutate(root, percent, seed):
    rng = random.Random(seed + 1)
    tpls = templates(random.Random(seed))
    paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
    step = max(1, round(100 / percent))
    chosen = paths[::step]
    for p in chosen:
        if p.endswith(".conf"):
            with open(p, "rb") as f:
                data = f.read()
            data = data.replace(b" = ", b" = changed-", 1)
            with open(p, "wb") as f:
                f.write(data)
        elif p.endswith(".bin"):
            size = os.path.getsize(p)
            with open(p, "r+b") as f:
                f.seek(rng.randrange(0, max(1, size - 65536)))
                f.write(rng.randbytes(min(65536, size)))
        else:
            data, _ = log_bytes(rng, tpls, 64 * 1024, 10**8)
            with open(p, "ab") as f:
                f.write(data)
        os.utime(p, (1767312000, 1767312000))
    print(f"gen-corpus: changed {len(chosen)} of {len(paths)} files in {root}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--size-mib", type=int, default=1100)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--mutate", type=float, metavar="PERCENT")
    a = ap.parse_args()
    if a.mutate is not None:
        mutate(a.dir, a.mutate, a.seed)
    else:
        generate(a.dir, a.size_mib, a.seed)


if __name__ == "__main__":
    main()
