#!/usr/bin/env bash
# check-layers.sh - proves from the object files that each daemon's modules
# only call downward (issue 12: "one direction of dependencies").
#
#   scripts/check-layers.sh [BUILD_DIR]     (default: build)
#   scripts/check-layers.sh BUILD_DIR --self-test
#       shows the check can fail: the layer order turned upside down and
#       storaged's known cycles unlisted must both be refused.
#
# For every object file of a daemon, `nm` gives the symbols it defines and
# those it leaves undefined; an undefined symbol defined by another object
# of the same daemon is a call (or a data reference) from one module to the
# other. Symbols from common/, libc and the libraries are not looked at.
#
# balancerd: the layer order below is the rule. A module may use what its
# own file defines and what the modules of lower lines define, never a
# module of its own line or of a higher one. An object file that is in no
# line is an error too (a new module says where it belongs). The includes
# of balancerd's own headers follow the same order (each X.h belongs to
# module X; bal_routes.h to routes, balancer.h to balancer).
#
# storaged: its modules are not layered yet (the disk engine's files call
# each other in a circle, issue 12 "storaged: the engine's files by
# concern"), so the check is weaker: the groups of files that call each
# other in a cycle (strongly connected components of the call graph) are
# listed below as known; any other cycle, or a known one that grew, fails
# (one that shrank or split passes, with a note to update the list).
# When the engine is split, shrink or drop the known list.
#
# CHECK_LAYERS_BALANCERD and CHECK_LAYERS_STORAGED_KNOWN, when set, replace
# the two lists (the test suite uses them to see that a wrong order or an
# unlisted cycle fails); CHECK_LAYERS_VERBOSE=1 prints storaged's cycles.
#
# Exit status: 0 clean, 1 a violation (each printed), 2 cannot check (no
# objects: build first).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

if [ "${2:-}" = "--self-test" ]; then
    # The check must be able to fail: the real order upside down must be
    # refused, and so must storaged's cycles once they are not listed.
    self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
    "$self" "$1" >/dev/null || { echo "self-test: the tree itself does not pass"; exit 1; }
    upside=$(sed -n "/^BALANCERD_LAYERS='/,/^'/p" "$self" | sed '1d;$d' | tac)
    out=$(CHECK_LAYERS_BALANCERD="$upside" "$self" "$1" || true)
    echo "$out" | grep -q "which is above it" || { echo "self-test: an upside-down balancerd order passed"; exit 1; }
    known=$(sed -n "/^STORAGED_KNOWN_CYCLES='/,/^'/p" "$self" | sed '1d;$d')
    if [ -n "$known" ]; then
        out=$(CHECK_LAYERS_STORAGED_KNOWN='' "$self" "$1" || true)
        echo "$out" | grep -q "cycle that is new" || { echo "self-test: an unlisted storaged cycle passed"; exit 1; }
    fi
    echo "check-layers self-test: a wrong order and an unlisted cycle are refused"
    exit 0
fi

build=${1:-build}
case "$build" in /*) ;; *) build="$top/$build" ;; esac

# ---- the rule, written once ----------------------------------------------
# balancerd, bottom first; modules on one line may not call each other.
BALANCERD_LAYERS='
state
upstream
bstream fanout
view
probe
gcdebt
gctouch
repair
hedge
proxy cluster antientropy
page
routes
balancer
main
'
# storaged: cycles known today (one per line, the files of one strongly
# connected component, sorted). Nothing else may call in a circle. The
# shape: disk_open.c holds the ops table (which names the op files'
# functions) and the helpers the op files call back.
STORAGED_KNOWN_CYCLES='
disk_compact disk_gc disk_open disk_read disk_scrub disk_tomb disk_write
'

command -v nm >/dev/null || { echo "check-layers: nm not found (binutils)" >&2; exit 2; }

# Prints "<module> D <symbol>" and "<module> U <symbol>" for the objects
# given (module: the source file name without .c).
symbols() {
    local o m
    for o in "$@"; do
        m=$(basename "$o" .c.o)
        nm "$o" | awk -v m="$m" '$1 == "U" {print m, "U", $2; next}
            NF >= 3 && $2 ~ /^[TDBRCVWG]$/ {print m, "D", $3}'
    done
}

# Includes of a daemon's own headers: "<module> I <header module>".
includes() { # dir
    local f m
    for f in "$1"/*.c "$1"/*.h; do
        [ -e "$f" ] || continue
        m=$(basename "$f"); m=${m%.*}
        sed -n 's/^#include "\([^"]*\)\.h".*/\1/p' "$f" | while read -r h; do
            if [ -e "$1/$h.h" ]; then echo "$m I $h"; fi
        done
    done
}

# The objects of a daemon's current sources (an object left in the build
# tree by a source since removed or renamed is not one).
objs_of() { # build subdir
    local o m
    { find "$build/$1/CMakeFiles" -name '*.c.o' 2>/dev/null || true; } | sort | while read -r o; do
        m=$(basename "$o" .c.o)
        if [ -e "$top/$1/$m.c" ]; then echo "$o"; fi
    done
}

bal_objs=$(objs_of balancerd)
sto_objs=$(objs_of storaged)
if [ -z "$bal_objs" ] || [ -z "$sto_objs" ]; then
    echo "check-layers: no object files under $build/balancerd or $build/storaged: build first" >&2
    exit 2
fi

# shellcheck disable=SC2086
{ symbols $bal_objs; includes "$top/balancerd"; } > "${TMPDIR:-/tmp}/check-layers.$$.bal"
# shellcheck disable=SC2086
symbols $sto_objs > "${TMPDIR:-/tmp}/check-layers.$$.sto"
trap 'rm -f "${TMPDIR:-/tmp}/check-layers.$$".*' EXIT

python3 - "${TMPDIR:-/tmp}/check-layers.$$.bal" "${TMPDIR:-/tmp}/check-layers.$$.sto" \
    "${CHECK_LAYERS_BALANCERD-$BALANCERD_LAYERS}" \
    "${CHECK_LAYERS_STORAGED_KNOWN-$STORAGED_KNOWN_CYCLES}" "${CHECK_LAYERS_VERBOSE:-0}" <<'EOF'
import sys
from collections import defaultdict

bal_file, sto_file, layers_text, known_text = sys.argv[1:5]
HEADER_MODULE = {"bal_routes": "routes"}


def read(path):
    defs, uses, incs = {}, defaultdict(set), defaultdict(set)
    for line in open(path):
        m, kind, sym = line.split()
        if kind == "D":
            defs.setdefault(sym, m)
        elif kind == "U":
            uses[m].add(sym)
        else:
            incs[HEADER_MODULE.get(m, m)].add(HEADER_MODULE.get(sym, sym))
    return defs, uses, incs


def edges(defs, uses):
    """(caller, callee) -> symbols, between different modules."""
    out = defaultdict(set)
    for m, syms in uses.items():
        for s in syms:
            d = defs.get(s)
            if d and d != m:
                out[(m, d)].add(s)
    return out


def sccs(nodes, adj):
    """Tarjan's strongly connected components (iterative)."""
    index, low, on, stack, out, n = {}, {}, set(), [], [], [0]
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(adj[root])))]
        index[root] = low[root] = n[0]; n[0] += 1
        stack.append(root); on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = n[0]; n[0] += 1
                    stack.append(w); on.add(w)
                    work.append((w, iter(sorted(adj[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop(); on.discard(w); comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(tuple(sorted(comp)))
    return out


bad = 0

# ---- balancerd: the layer order ----
level = {}
for i, line in enumerate(l for l in layers_text.splitlines() if l.strip()):
    for m in line.split():
        level[m] = i
defs, uses, incs = read(bal_file)
modules = set(defs.values()) | set(uses) | set(incs)
for m in sorted(modules - set(level)):
    print(f"balancerd: module {m} is in no layer: add it to BALANCERD_LAYERS in scripts/check-layers.sh")
    bad += 1
for (a, b), syms in sorted(edges(defs, uses).items()):
    if a in level and b in level and level[b] >= level[a]:
        kind = "beside" if level[b] == level[a] else "above"
        print(f"balancerd: {a} calls {b}, which is {kind} it: {', '.join(sorted(syms))}")
        bad += 1
for a, hs in sorted(incs.items()):
    for h in sorted(hs):
        if h != a and a in level and h in level and level[h] >= level[a]:
            print(f"balancerd: {a} includes {h}.h, which is not below it")
            bad += 1

# ---- storaged: no new cycles ----
defs, uses, _ = read(sto_file)
adj = defaultdict(set)
for (a, b) in edges(defs, uses):
    adj[a].add(b)
nodes = set(defs.values()) | set(uses)
known = [tuple(sorted(l.split())) for l in known_text.splitlines() if l.strip()]
if sys.argv[5:] == ["1"]:
    for comp in sccs(nodes, adj):
        print("storaged cycle:", " ".join(comp))
        for a in comp:
            for b in sorted(adj[a] & set(comp)):
                print(f"  {a} -> {b}")
for comp in sccs(nodes, adj):
    if any(set(comp) <= set(k) for k in known):
        continue  # a known cycle, or part of one left after a split
    inside = [k for k in known if set(k) <= set(comp)]
    why = "grew from a known one" if inside else "is new"
    print(f"storaged: these modules call each other in a cycle that {why}: {' '.join(comp)}")
    for a in comp:
        for b in sorted(adj[a] & set(comp)):
            print(f"  {a} -> {b}")
    bad += 1
found = sccs(nodes, adj)
for k in known:
    if k not in found and not bad:
        print(f"check-layers: note: the known storaged cycle {' '.join(k)} is gone or smaller: "
              "update STORAGED_KNOWN_CYCLES")

if bad:
    print(f"check-layers: {bad} violation(s)")
    sys.exit(1)
print(f"check-layers: balancerd {len(level)} modules in {len(set(level.values()))} layers, "
      f"calls and includes downward only; storaged: no cycle beyond the {len(known)} known")
EOF
