"""The floor of a large receiveResponseXML: lxml parsing the same envelope, in a fresh process.

    python -m bench.large_floor ENVELOPE_FILE   → one JSON line: parse seconds, peak memory growth

The file is read before measuring; the peak (VmHWM) is reset to the current
RSS just before parsing where the kernel allows it (/proc/self/clear_refs).
"""

from __future__ import annotations

import json
import sys
import time

from lxml import etree


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def reset_peak(path: str = "/proc/self/clear_refs") -> bool:
    try:
        with open(path, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def main() -> None:
    with open(sys.argv[1], "rb") as f:
        body = f.read()
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True,
                             remove_comments=True, remove_pis=True, strip_cdata=True)
    reset = reset_peak()
    rss0, hwm0 = _status("VmRSS"), _status("VmHWM")
    started = time.perf_counter()
    root = etree.fromstring(body, parser)
    parse_s = time.perf_counter() - started
    hwm1 = _status("VmHWM")
    print(json.dumps({"parse_s": parse_s, "peak_growth_bytes": hwm1 - (rss0 if reset else hwm0), "peak_reset": reset,
                      "elements": sum(1 for _ in root.iter())}))


if __name__ == "__main__":
    main()
