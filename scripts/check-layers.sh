#!/usr/bin/env bash
# check-layers.sh - proves from the object files that each daemon's modules
# only call downward (issue 12: "one direction of dependencies").
#
#   scripts/check-layers.sh [BUILD_DIR]     (default: build)
#   scripts/check-layers.sh BUILD_DIR --self-test
#       shows the check can fail: each daemon's layer order turned upside
#       down must be refused, and so must a storaged module left out of it.
#
# For every object file of a daemon, `nm` gives the symbols it defines and
# those it leaves undefined; an undefined symbol defined by another object
# of the same daemon is a call (or a data reference) from one module to the
# other. Symbols from common/, libc and the libraries are not looked at.
#
# The layer orders below are the rule, one per daemon. A module may use what
# its own file defines and what the modules of lower lines define, never a
# module of its own line or of a higher one (so no two modules call each
# other in a cycle). An object file that is in no line is an error too (a
# new module says where it belongs).
#
# The includes of a daemon's own headers follow the same order.
# balancerd: each X.h belongs to module X (bal_routes.h to routes).
# storaged: X.h belongs to module X too, except the headers named in the
# order itself (a word ending in .h): those are interfaces shared by a
# group of modules (store.h: the backend interface; disk.h, s3.h: each
# backend's outside; disk_internal.h, s3_internal.h: each backend's shared
# state) and sit below every file that includes them. A file may include
# its own header (X.c includes X.h) and the headers of lower lines; a
# storaged header that is in no line and is no module's own is an error.
#
# CHECK_LAYERS_BALANCERD and CHECK_LAYERS_STORAGED, when set, replace the
# two orders (the self-test uses them to see that a wrong order fails).
#
# Exit status: 0 clean, 1 a violation (each printed), 2 cannot check (no
# objects: build first).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

if [ "${2:-}" = "--self-test" ]; then
    # The check must be able to fail: each real order upside down must be
    # refused (calls and includes), and so must a storaged module left out.
    # (grep reads $out from a here-string: `echo "$out" | grep -q` fails
    # under pipefail whenever grep exits before echo has written it all.)
    self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
    "$self" "$1" >/dev/null || { echo "self-test: the tree itself does not pass"; exit 1; }
    upside=$(sed -n "/^BALANCERD_LAYERS='/,/^'/p" "$self" | sed '1d;$d' | tac)
    out=$(CHECK_LAYERS_BALANCERD="$upside" "$self" "$1" || true)
    grep -q "^balancerd: .* which is above it" <<<"$out" || { echo "self-test: an upside-down balancerd order passed"; exit 1; }
    sto=$(sed -n "/^STORAGED_LAYERS='/,/^'/p" "$self" | sed '1d;$d')
    out=$(CHECK_LAYERS_STORAGED="$(echo "$sto" | tac)" "$self" "$1" || true)
    grep -q "^storaged: disk_open calls disk_read, which is above it" <<<"$out" || { echo "self-test: an upside-down storaged order passed (calls)"; exit 1; }
    grep -q "^storaged: disk_open.c includes disk_internal.h, which is not below it" <<<"$out" || { echo "self-test: an upside-down storaged order passed (includes)"; exit 1; }
    out=$(CHECK_LAYERS_STORAGED="$(echo "$sto" | sed 's/ *disk_check//')" "$self" "$1" || true)
    grep -q "^storaged: module disk_check is in no layer" <<<"$out" || { echo "self-test: a storaged module in no layer passed"; exit 1; }
    # Two modules of one line that call each other are refused too.
    out=$(CHECK_LAYERS_STORAGED="$(echo "$sto" | sed 's/^disk_mark disk_check disk_rmframe$/disk_mark disk_check disk_rmframe disk_index/; /^disk_index$/d')" "$self" "$1" || true)
    grep -q "^storaged: disk_mark calls disk_index, which is beside it" <<<"$out" || { echo "self-test: a call beside passed"; exit 1; }
    echo "check-layers self-test: upside-down orders, a module in no layer and a call beside are refused"
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
gcdebt gcagree
gctouch
repair
hedge tagcache
proxy cluster antientropy
page
routes
balancer
main
'
# storaged, bottom first. The disk backend's lines are disk_open.c's opening
# comment; the S3 backend's, s3_internal.h's. The two backends share only
# the bottom lines (their order between each other means nothing: neither
# calls the other); store (the registry naming both, and the wrappers the
# routes call) sits above both, its interface store.h below both.
STORAGED_LAYERS='
format objtab
journal node
store.h
disk.h s3.h
s3_xml
s3_client
s3_internal.h
s3_sums
s3_core
s3_claim
s3_store s3_gc s3_open
s3_backend
disk_internal.h
disk_base
disk_tomb disk_room
disk_index
disk_mark disk_check disk_rmframe
disk_read disk_write disk_gc disk_remove disk_compact disk_replay
disk_scrub
disk_open
store fsck
routes.h
routes_objects
routes_admin
main
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

# The same with file names: "<file> I <header file>" (storaged).
file_includes() { # dir
    local f
    for f in "$1"/*.c "$1"/*.h; do
        [ -e "$f" ] || continue
        sed -n 's/^#include "\([^"]*\.h\)".*/\1/p' "$f" | while read -r h; do
            if [ -e "$1/$h" ]; then echo "$(basename "$f") I $h"; fi
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
{ symbols $sto_objs; file_includes "$top/storaged"; } > "${TMPDIR:-/tmp}/check-layers.$$.sto"
trap 'rm -f "${TMPDIR:-/tmp}/check-layers.$$".*' EXIT

python3 - "${TMPDIR:-/tmp}/check-layers.$$.bal" "${TMPDIR:-/tmp}/check-layers.$$.sto" \
    "${CHECK_LAYERS_BALANCERD-$BALANCERD_LAYERS}" \
    "${CHECK_LAYERS_STORAGED-$STORAGED_LAYERS}" <<'EOF'
import sys
from collections import defaultdict

bal_file, sto_file, layers_text, sto_layers_text = sys.argv[1:5]
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

nbal, nbal_lines = len(level), len(set(level.values()))

# ---- storaged: the layer order, headers included ----
level, hlevel = {}, {}
for i, line in enumerate(l for l in sto_layers_text.splitlines() if l.strip()):
    for w in line.split():
        (hlevel if w.endswith(".h") else level)[w] = i
defs, uses, _ = read(sto_file)
modules = set(defs.values()) | set(uses)
for m in sorted(modules - set(level)):
    print(f"storaged: module {m} is in no layer: add it to STORAGED_LAYERS in scripts/check-layers.sh")
    bad += 1
for (a, b), syms in sorted(edges(defs, uses).items()):
    if a in level and b in level and level[b] >= level[a]:
        kind = "beside" if level[b] == level[a] else "above"
        print(f"storaged: {a} calls {b}, which is {kind} it: {', '.join(sorted(syms))}")
        bad += 1


def file_level(f):
    """A file's level: X.c is module X's; X.h is its own line's or module X's."""
    stem, ext = f.rsplit(".", 1)
    if ext == "h" and f in hlevel:
        return hlevel[f]
    return level.get(stem)


sto_incs = [l.split() for l in open(sto_file) if l.split()[1] == "I"]
for f, _, h in sorted(sto_incs):
    lf, lh = file_level(f), file_level(h)
    if lh is None:
        print(f"storaged: header {h} (included by {f}) is in no layer and no module's own: "
              "add it to STORAGED_LAYERS in scripts/check-layers.sh")
        bad += 1
    elif lf is not None and h != f.rsplit(".", 1)[0] + ".h" and lh >= lf:
        print(f"storaged: {f} includes {h}, which is not below it")
        bad += 1

if bad:
    print(f"check-layers: {bad} violation(s)")
    sys.exit(1)
print(f"check-layers: balancerd {nbal} modules in {nbal_lines} layers, storaged {len(level)} "
      f"modules in {len(set(level.values()) | set(hlevel.values()))} layers: calls and includes "
      "downward only")
EOF
