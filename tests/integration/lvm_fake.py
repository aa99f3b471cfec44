"""A stand-in for ``/sbin/lvm`` on the test sshd's PATH (LVM cannot run on this machine).

It keeps volume groups and logical volumes in a JSON file (``FAKE_LVM_STATE``), appends every
argument vector it is called with to ``FAKE_LVM_LOG`` (one JSON list per line), and answers
the sub-commands the ``lvm-storage`` driver uses — ``vgs``, ``lvs`` (JSON reports),
``lvcreate``, ``lvextend``, ``lvremove``, ``lvchange`` — with lvm's own messages for the
errors the driver maps (volume group not found, insufficient free space, already exists).
Only for command construction and error paths; the real thing is the storage-host VM.
"""

from __future__ import annotations

import json
import math
import os
import sys


def load() -> dict:
    with open(os.environ["FAKE_LVM_STATE"]) as state:
        return json.load(state)


def save(state: dict) -> None:
    with open(os.environ["FAKE_LVM_STATE"], "w") as out:
        json.dump(state, out)


def fail(message: str, code: int = 5) -> None:
    print(f"  {message}", file=sys.stderr)
    sys.exit(code)


def group(state: dict, name: str) -> dict:
    if name not in state["vgs"]:
        fail(f'Volume group "{name}" not found\n  Cannot process volume group {name}')
    return state["vgs"][name]


def free(vg: dict) -> float:
    return vg["size"] - sum(lv["size"] for lv in vg["lvs"].values())


def megabytes(text: str, extent: float) -> float:
    value = float(text.rstrip("mM"))
    return math.ceil(value / extent) * extent


def options(argv: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    flags: dict[str, list[str]] = {}
    rest: list[str] = []
    takes_value = {"-n", "-L", "-o", "--addtag", "--deltag", "--reportformat", "--units",
                   "-p"}
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg in takes_value:
            flags.setdefault(arg, []).append(argv[index + 1])
            index += 2
            continue
        if arg.startswith("-"):
            flags.setdefault(arg, []).append("")
        else:
            rest.append(arg)
        index += 1
    return flags, rest


def report(key: str, rows: list[dict]) -> None:
    print(json.dumps({"report": [{key: rows}]}, indent=2))


def main(argv: list[str]) -> None:  # noqa: PLR0912 - one branch per sub-command
    with open(os.environ["FAKE_LVM_LOG"], "a") as log:
        log.write(json.dumps(argv) + "\n")
    state = load()
    if state.get("broken"):
        fail(state["broken"], 3)
    command, flags, rest = argv[0], *options(argv[1:])
    if command == "vgs":
        vg = group(state, rest[0])
        shown_free = vg.get("shown_free", free(vg))  # another writer may take it meanwhile
        report("vg", [{"vg_name": rest[0], "vg_size": f"{vg['size']:.2f}",
                       "vg_free": f"{shown_free:.2f}", "vg_extent_size": f"{vg['extent']:.2f}"}])
    elif command == "lvs":
        vg = group(state, rest[0])
        report("lv", [{"lv_name": name, "lv_size": f"{lv['size']:.2f}",
                       "origin": lv.get("origin", ""),
                       "origin_size": (f"{vg['lvs'][lv['origin']]['size']:.2f}"
                                       if lv.get("origin") else ""),
                       "lv_attr": lv["attr"], "lv_tags": ",".join(lv.get("tags", []))}
                      for name, lv in sorted(vg["lvs"].items())])
    elif command == "lvcreate":
        target = rest[0]
        vg_name, _sep, origin = target.partition("/")
        vg = group(state, vg_name)
        name = flags["-n"][0]
        if name in vg["lvs"]:
            fail(f'Logical Volume "{name}" already exists in volume group "{vg_name}"')
        size = megabytes(flags["-L"][0], vg["extent"])
        if size > free(vg):
            fail(f'Volume group "{vg_name}" has insufficient free space '
                 f'({int(free(vg) / vg["extent"])} extents): {int(size / vg["extent"])} '
                 "required.")
        lv = {"size": size, "attr": "swi-a-s---" if "-s" in flags else "-wi-a-----",
              "tags": flags.get("--addtag", [])}
        if origin:
            lv["origin"] = origin
        vg["lvs"][name] = lv
        save(state)
        print(f'  Logical volume "{name}" created.')
    elif command in ("lvextend", "lvremove", "lvchange"):
        vg_name, _sep, name = rest[0].partition("/")
        vg = group(state, vg_name)
        if name not in vg["lvs"]:
            fail(f'Failed to find logical volume "{vg_name}/{name}"')
        lv = vg["lvs"][name]
        if command == "lvextend":
            size = megabytes(flags["-L"][0], vg["extent"])
            if size - lv["size"] > free(vg):
                fail(f'Insufficient free space: {int(size / vg["extent"])} extents needed, '
                     f'but only {int(free(vg) / vg["extent"])} available')
            lv["size"] = size
        elif command == "lvremove":
            del vg["lvs"][name]
        else:
            for tag in flags.get("--deltag", []):
                lv["tags"] = [t for t in lv.get("tags", []) if t != tag]
        save(state)
    else:
        fail(f"no such command {command!r}", 3)


if __name__ == "__main__":
    main(sys.argv[1:])
