"""Where a gateway's CPU went: shares of py-spy's samples (raw/folded output), by function, self and inclusive.

    PYSPY=1 loadtests/bench_every_feature.sh
    .venv/bin/python loadtests/bench_every_feature.py loadtests/results/bench/pyspy_static_1.txt [--top 40]

Inclusive counts a function once per sample however deep it recurs. Coroutines resumed by the event loop
start their own stacks, so "inclusive" of a caller misses the time its awaited callees ran in other turns of
the loop; the functions that do the work are still counted.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

_FRAME = re.compile(r"(.*) \((.*?)(?::\d+)?\)$")


def _name(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match.group(2).split("site-packages/")[-1]
    path = path[path.index("gateway/") :] if "gateway/" in path else path
    return f"{match.group(1)} ({path})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    with open(args.file, encoding="utf-8") as lines:
        for line in lines:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            names = [_name(frame) for frame in stack.split(";")]
            total += int(count)
            own[names[-1]] += int(count)
            for name in set(names):
                inclusive[name] += int(count)
    print(f"{total} samples")
    for title, counts in (("self", own), ("inclusive", inclusive)):
        print(f"--- {title}")
        for name, count in counts.most_common(args.top):
            print(f"{100 * count / max(total, 1):6.2f}%  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
