"""The pure checks of a fault-campaign trial (bench/chaos_trial.py): is the output the clean
run's, and did one attempt ever get two groups. Tested on planted cases in tests/test_chaos.py."""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any


def compare_outputs(expected: bytes, got: bytes | None) -> tuple[bool, bool, str]:
    """(same, byte-identical, why not): ids and their order exactly, every other column as text
    or, where both parse as numbers, to 1e-12 relative."""
    if got is None:
        return False, False, "no output"
    if got == expected:
        return True, True, ""
    want = list(csv.reader(io.StringIO(expected.decode())))
    have = list(csv.reader(io.StringIO(got.decode(errors="replace"))))
    if len(want) != len(have):
        return False, False, f"{len(have) - 1} rows, expected {len(want) - 1}"
    for number, (a, b) in enumerate(zip(want, have, strict=True)):
        if len(a) != len(b) or a[:1] != b[:1]:
            return False, False, f"row {number}: {b[:2]!r}, expected {a[:2]!r}"
        for x, y in zip(a[1:], b[1:], strict=True):
            if x != y and not _close(x, y):
                return False, False, f"row {number} ({a[0]}): {y}, expected {x}"
    return True, False, ""


def _close(x: str, y: str) -> bool:
    try:
        fx, fy = float(x), float(y)
    except ValueError:
        return False
    return abs(fx - fy) <= 1e-12 * max(abs(fx), abs(fy), 1e-300)


def two_groups_for_one_attempt(starts: Sequence[tuple[str, int, Sequence[tuple[str, int]]]],
                               created: Sequence[dict[str, Any]]) -> list[str]:
    """What shows one attempt with two groups. ``starts``: (group, pid, (task, attempt) pairs)
    of every worker seen; ``created``: the emulator's journal of PUTs (ACI only), which then
    decides whether a name was created twice (a replayed identical PUT is the same group)."""
    found = []
    pairs: dict[tuple[str, int], set[str]] = defaultdict(set)
    if created:
        by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for c in sorted(created, key=lambda c: c["at"]):
            by_name[c["name"]].append(c)
            for task, attempt in c["orders"]:
                pairs[(task, int(attempt))].add(c["name"])
        for name, puts in sorted(by_name.items()):
            for earlier, later in itertools.pairwise(puts):
                if later["status"] == 201:
                    found.append(f"group {name} was created again after it was deleted")
                elif later["body_sha256"] != earlier["body_sha256"]:
                    found.append(f"group {name} was replaced by a different PUT")
    else:
        pids: dict[str, set[int]] = defaultdict(set)
        for group, pid, orders in starts:
            pids[group].add(pid)
            for task, attempt in orders:
                pairs[(task, int(attempt))].add(group)
        for group, seen in sorted(pids.items()):
            if len(seen) > 1:
                found.append(f"group {group} was started {len(seen)} times (pids "
                             f"{', '.join(map(str, sorted(seen)))})")
    for (task, attempt), names in sorted(pairs.items()):
        if len(names) > 1:
            found.append(f"{task} attempt {attempt} ran in {len(names)} groups: "
                         f"{', '.join(sorted(names))}")
    return found


def attempts_run_by_their_claimers(files: Mapping[str, bytes]) -> list[str]:
    """What shows an attempt run by a group other than the one that claimed it (groups pull
    their tasks: the claim, created only if absent, is what makes an attempt one group's).
    ``files``: ``tasks/<task>/attempt-<n>/{claim,status}.json`` -> their bytes."""
    claims: dict[str, str] = {}
    statuses: dict[str, str] = {}
    for path, data in files.items():
        folder, _, name = path.rpartition("/")
        try:
            group = str(json.loads(data)["group"])
        except (ValueError, KeyError, TypeError):
            continue
        (claims if name == "claim.json" else statuses)[folder] = group
    found = []
    for folder, group in sorted(statuses.items()):
        claimer = claims.get(folder)
        # A status the controller wrote for a lost attempt names the claimer too.
        if claimer is not None and claimer != group:
            found.append(f"{folder} was claimed by {claimer} but its status is {group}'s")
    return found
