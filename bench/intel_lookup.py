"""Threat-intel lookups per second: IntelIndex.match for hits and misses of each kind, on one core.

Run: python bench/intel_lookup.py [--seconds S]

Builds an index of 100k IPv4 addresses, 20k CIDRs (IPv4 /12-/30 and IPv6 /32-/64), 50k domains,
50k hashes (MD5, SHA-1 and SHA-256) and 10k URLs from a fixed seed, prints how long the build
took and the memory it holds, then match() calls per CPU second for each case. The stream calls
match() once per connection (remote address), per process (hash) and per URL or domain seen in
a command line.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import os
import random
import resource
import time
from collections.abc import Callable, Sequence
from functools import partial

from iotsec.analytics.indicators import IndicatorKind
from iotsec.analytics.intel import Indicator, IntelIndex

SEED = 20250101


def _indicators(rng: random.Random) -> tuple[list[Indicator], dict[str, list[str]]]:
    """The indicators, and probe values for each case (hits found in them, misses not)."""
    out: list[Indicator] = []

    def add(kind: IndicatorKind, value: str) -> None:
        out.append(Indicator(kind, value, value, "bench", f"bench:{len(out) + 1}"))

    addresses = {str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(100_000)}
    for address in addresses:
        add("ip", address)
    networks4: list[ipaddress.IPv4Network] = []
    networks6: list[ipaddress.IPv6Network] = []
    for i in range(20_000):
        if i % 10:
            prefix = rng.randint(12, 30)
            net4 = ipaddress.IPv4Network((rng.getrandbits(32), prefix), strict=False)
            networks4.append(net4)
            add("ip", str(net4))
        else:
            prefix = rng.randint(32, 64)
            net6 = ipaddress.IPv6Network((rng.getrandbits(128), prefix), strict=False)
            networks6.append(net6)
            add("ip", str(net6))
    words = ["cdn", "api", "update", "mail", "c2", "pool", "dl", "static", "auth", "node"]
    tlds = ["com", "net", "org", "io", "ru", "cn", "xyz", "top", "info", "example"]
    domains = {
        f"{rng.choice(words)}{rng.randint(0, 10**6)}.{rng.choice(words)}{rng.randint(0, 99)}."
        f"{rng.choice(tlds)}"
        for _ in range(50_000)
    }
    for domain in domains:
        add("domain", domain)
    hashes = [f"{rng.getrandbits(bits):0{bits // 4}x}" for bits in (128, 160, 256) * 16_667][
        :50_000
    ]
    for digest in hashes:
        add("hash", digest)
    urls = [f"http://{d}/bins/{rng.randint(0, 999)}.sh" for d in list(domains)[:10_000]]
    for url in urls:
        add("url", url)

    probes = {
        "ip exact hit": rng.sample(sorted(addresses), 1000),
        "ip CIDR hit (v4)": [
            str(n.network_address + rng.randrange(n.num_addresses))
            for n in rng.sample(networks4, 1000)
        ],
        "ip CIDR hit (v6)": [
            str(n.network_address + rng.randrange(n.num_addresses))
            for n in rng.sample(networks6, 1000)
        ],
        # Random addresses: about a fifth fall in one of the CIDRs, and are dropped in main().
        "ip miss (v4)": [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(5000)],
        "ip miss (v6)": [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(1000)],
        "ip mapped v4 hit": [f"::ffff:{a}" for a in rng.sample(sorted(addresses), 1000)],
        "domain exact hit": rng.sample(sorted(domains), 1000),
        "domain subdomain hit": [f"a.b.{d}" for d in rng.sample(sorted(domains), 1000)],
        "domain miss": [f"www.site{i}.unlisted.example" for i in range(1000)],
        "hash hit": rng.sample(hashes, 1000),
        "hash hit (upper case)": [h.upper() for h in rng.sample(hashes, 1000)],
        "hash miss": [f"{rng.getrandbits(256):064x}" for _ in range(1000)],
        "url exact hit": rng.sample(urls, 1000),
        "url host hit": [f"https://x.{d}/p?q=1" for d in rng.sample(sorted(domains), 1000)],
        "url miss": [f"https://site{i}.unlisted.example/x" for i in range(1000)],
    }
    return out, probes


def _rate(fn: Callable[[str], object], values: Sequence[str], seconds: float) -> float:
    """Best of five rounds of about ``seconds / 5`` each, in calls per CPU second.

    CPU time (this thread's), not wall time: on a shared machine the wall clock also counts the
    time other processes held the core.
    """
    best = 0.0
    for _ in range(5):
        count = 0
        start = time.thread_time()
        deadline = start + seconds / 5
        while True:
            for value in values:
                fn(value)
            count += len(values)
            now = time.thread_time()
            if now >= deadline:
                break
        best = max(best, count / (now - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per case (default 1)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    rng = random.Random(SEED)
    indicators, probes = _indicators(rng)
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.thread_time()
    index = IntelIndex(indicators)
    built = time.thread_time() - start
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    counts = ", ".join(f"{n} {kind}" for kind, n in index.counts.items())
    print(f"index: {len(index):,} indicators ({counts})")
    print(f"built in {built:.2f} CPU s, +{grown:.0f} MB; lookups per CPU second:")
    misses = [v for v in probes["ip miss (v4)"] if index.match("ip", v) is None]
    probes["ip miss (v4)"] = misses[:1000]
    print(f"{'case':<24} {'kind':<7} {'matched':>8} {'lookups/s':>11} {'us/lookup':>10}")
    for label, values in probes.items():
        kind: IndicatorKind = label.split(" ")[0]  # type: ignore[assignment]
        matched = sum(index.match(kind, v) is not None for v in values) / len(values)
        rate = _rate(partial(index.match, kind), values, args.seconds)
        print(f"{label:<24} {kind:<7} {matched:>8.0%} {rate:>11,.0f} {1e6 / rate:>10.2f}")


if __name__ == "__main__":
    main()
