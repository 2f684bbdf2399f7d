#!/usr/bin/env python3
"""explore.py - the power-loss crash-state explorer for storaged (in the style
of ALICE, OSDI 2014, and CrashMonkey, OSDI 2018).

1. Record: run a workload against a real ca-cas-storaged preloaded with
   tests/crash/recorder.c, which logs every state-changing file-system call
   (with the bytes written) under the store directory; this driver appends
   MARK records to the same log around each HTTP request ("send" before it
   goes out, "ack" once the answer is in), so acknowledgements are ordered
   with the file-system calls.
2. Construct: for crash points in the log (every sync, every mark, a sample
   between), build the directories a power cut there could leave, under
   two models (see docs/TESTING.md, "Power-loss crash states"):
     strict  nothing beyond fsync/fdatasync: a write persists only if an
             fsync/fdatasync of its file began after it; a directory entry
             (create, rename, link, unlink) only if an fsync of the
             directory began after it; anything else may or may not have
             reached the disk, in any combination, writes torn at 512-byte
             boundaries;
     ext4    ext4 data=ordered: metadata (creates, renames, unlinks,
             truncates and appends with their size) persists as a prefix in
             call order; any fsync/fdatasync commits every metadata change
             before it; overwrites inside a file's size persist
             independently unless their file was synced, and may tear.
3. Check: start storaged on each distinct state (or see it refuse with a
   message naming `ca-cas fsck --repair`, run that, start again); every
   object whose durable PUT was acknowledged before the crash point reads
   back byte for byte; nothing is served with wrong bytes; an acknowledged
   DELETE stays deleted; an acknowledged GC begin/end is still in force;
   objects an acknowledged GC end removed stay removed.

Usage:
  explore.py [--build DIR] [--workload NAME ...] [--budget-states N]
             [--seconds S] [--keep DIR] [--json FILE]
Exit status: 0 when no violation other than the listed expected ones was
found, 1 otherwise. A summary line "states built N, checked N, violations
N" is printed at the end.
"""
import argparse
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))

OP_OPEN, OP_WRITE, OP_TRUNC, OP_FALLOC, OP_RENAME, OP_UNLINK, OP_LINK, OP_MKDIR = range(1, 9)
OP_FSYNC, OP_FDATASYNC, OP_SYNCFS, OP_SFR, OP_MARK, OP_RMDIR = range(9, 15)
MAGIC = 0x314C5243
HDR = struct.Struct("<IIBBHIQQQQIIII")  # 64 bytes, as recorder.c writes
SECTOR = 512

# Violations known on current code and being fixed elsewhere; reported,
# listed as expected, and not counted as failures. Empty: the last one (a
# durable re-PUT of an object first stored with ?sync=0 answered 200
# without making that copy durable, "reput-after-sync0") is fixed, and the
# puts workload keeps checking it.
EXPECTED = set()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def blob(seed, size):
    return random.Random(seed).randbytes(size)


def sha1(b):
    return hashlib.sha1(b).hexdigest()


# ---------------------------------------------------------------- the log ----

class Log:
    """The driver's side of the recorder log: appends MARK records."""

    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.lock = threading.Lock()

    def record(self, op, text="", ino=0, a=0, b=0, data=b""):
        p1 = text.encode()
        total = HDR.size + len(p1) + len(data)
        rec = HDR.pack(MAGIC, total, op, 0, 0, 0, ino, a, b, 0, len(p1), 0, len(data), 0) + p1 + data
        with self.lock:
            n = os.write(self.fd, rec)
            assert n == len(rec)

    def mark(self, text):
        self.record(OP_MARK, text)

    def size(self):
        return os.fstat(self.fd).st_size

    def close(self):
        os.close(self.fd)


def parse_log(path):
    ops = []
    with open(path, "rb") as f:
        raw = f.read()
    at = 0
    while at < len(raw):
        (magic, total, op, isdir, _z1, _z2, ino, a, b, c, l1, l2, ld, _z3) = HDR.unpack_from(raw, at)
        if magic != MAGIC or total < HDR.size:
            raise ValueError(f"bad log record at {at}")
        p = at + HDR.size
        p1 = raw[p:p + l1].decode()
        p2 = raw[p + l1:p + l1 + l2].decode()
        data = raw[p + l1 + l2:p + l1 + l2 + ld]
        ops.append(dict(off=at, op=op, isdir=isdir, ino=ino, a=a, b=b, c=c, p1=p1, p2=p2, data=data))
        at += total
    return ops


def dirname(name):
    return name.rsplit("/", 1)[0] if "/" in name else ""


def resolve(ops):
    """Turns the raw log into model operations on model inodes.

    Each op gets: kind ('create', 'write', 'trunc', 'rename', 'unlink',
    'link', 'mkdir', 'sync', 'syncfs', 'mark'), and for data ops 'm' (model
    inode). Appends (writes past the file's size when called) get
    append=True. Also fills 'names' of the volatile run for reference."""
    cur = {}       # st_ino -> model inode
    names = {}     # name -> model inode (volatile)
    sizes = {}     # model inode -> size (volatile)
    nextm = [0]
    out = []

    def new_inode(st_ino):
        nextm[0] += 1
        cur[st_ino] = nextm[0]
        sizes[nextm[0]] = 0
        return nextm[0]

    for o in ops:
        k = o["op"]
        r = dict(off=o["off"], raw=o)
        if k == OP_OPEN:
            existed = o["b"]
            name = o["p1"]
            if not existed or name not in names:
                m = new_inode(o["ino"])
                names[name] = m
                r.update(kind="create", name=name, dir=dirname(name), m=m)
                out.append(r)
            else:
                m = names[name]
                cur[o["ino"]] = m
            if existed and (o["a"] & os.O_TRUNC):
                out.append(dict(off=o["off"], raw=o, kind="trunc", m=m, size=0, append=False))
                sizes[m] = 0
            continue
        if k in (OP_WRITE, OP_TRUNC, OP_FALLOC, OP_FSYNC, OP_FDATASYNC, OP_SFR) and not o["isdir"]:
            m = cur.get(o["ino"])
            if m is None:  # a file that existed before recording: adopt it
                m = new_inode(o["ino"])
                names.setdefault(o["p1"], m)
        if k == OP_WRITE:
            end = o["a"] + len(o["data"])
            app = end > sizes[m]
            if app and o["a"] < sizes[m]:
                # Split: the part inside the size is an overwrite.
                cut = sizes[m] - o["a"]
                out.append(dict(off=o["off"], raw=o, kind="write", m=m, at=o["a"],
                                data=o["data"][:cut], append=False))
                out.append(dict(off=o["off"], raw=o, kind="write", m=m, at=sizes[m],
                                data=o["data"][cut:], append=True))
            else:
                r.update(kind="write", m=m, at=o["a"], data=o["data"], append=app)
                out.append(r)
            sizes[m] = max(sizes[m], end)
        elif k == OP_TRUNC:
            r.update(kind="trunc", m=m, size=o["a"], append=False)
            sizes[m] = o["a"]
            out.append(r)
        elif k == OP_FALLOC:
            if o["a"] == 0 and o["b"] + o["c"] > sizes[m]:  # mode 0 extends the size
                r.update(kind="trunc", m=m, size=o["b"] + o["c"], append=False, grow=True)
                sizes[m] = o["b"] + o["c"]
                out.append(r)
        elif k == OP_RENAME:
            src, dst = o["p1"], o["p2"]
            m = names.get(src)
            if m is None:
                continue
            r.update(kind="rename", src=src, dst=dst, m=m, dir=dirname(dst), dir2=dirname(src))
            names[dst] = m
            del names[src]
            out.append(r)
        elif k == OP_UNLINK:
            m = names.pop(o["p1"], None)
            r.update(kind="unlink", name=o["p1"], m=m, dir=dirname(o["p1"]))
            out.append(r)
        elif k == OP_LINK:
            m = names.get(o["p1"])
            if m is None:
                continue
            names[o["p2"]] = m
            r.update(kind="link", src=o["p1"], dst=o["p2"], m=m, dir=dirname(o["p2"]))
            out.append(r)
        elif k in (OP_MKDIR, OP_RMDIR):
            pass  # the store directory is flat; nothing to model
        elif k in (OP_FSYNC, OP_FDATASYNC):
            if o["isdir"]:
                r.update(kind="dsync", dir=o["p1"], covers=o["b"])
            else:
                r.update(kind="sync", m=m, covers=o["b"])
            out.append(r)
        elif k == OP_SYNCFS:
            r.update(kind="syncfs", covers=o["b"])
            out.append(r)
        elif k == OP_MARK:
            r.update(kind="mark", text=o["p1"])
            out.append(r)
    for i, r in enumerate(out):
        r["i"] = i
    return out


def is_meta(r):
    return r["kind"] in ("create", "rename", "unlink", "link") or \
        (r["kind"] == "trunc") or (r["kind"] == "write" and r["append"])


# ------------------------------------------------------- building states ----

def apply(names, inodes, r, hole=None):
    """Applies one model op to a state (names: name -> m; inodes: m -> bytearray).
    hole, for a write, is a range (lo, hi) of its bytes that did not reach
    the disk (a torn write): the file keeps what it held there."""
    k = r["kind"]
    if k == "create":
        inodes.setdefault(r["m"], bytearray())
        names[r["name"]] = r["m"]
    elif k == "write":
        b = inodes.setdefault(r["m"], bytearray())
        at, data = r["at"], r["data"]
        pieces = [(0, data)] if hole is None else [(0, data[:hole[0]]), (hole[1], data[hole[1]:])]
        for rel, piece in pieces:
            if not piece:
                continue
            if len(b) < at + rel:
                b.extend(b"\0" * (at + rel - len(b)))
            b[at + rel:at + rel + len(piece)] = piece
    elif k == "trunc":
        b = inodes.setdefault(r["m"], bytearray())
        if len(b) > r["size"]:
            del b[r["size"]:]
        else:
            b.extend(b"\0" * (r["size"] - len(b)))
    elif k == "rename":
        # A rename persists whole or not at all: dst names the inode the
        # source named when it was called; the source name goes if it still
        # names that inode.
        names[r["dst"]] = r["m"]
        if names.get(r["src"]) == r["m"]:
            del names[r["src"]]
    elif k == "unlink":
        if r["name"] in names and (r["m"] is None or names[r["name"]] == r["m"]):
            del names[r["name"]]
    elif k == "link":
        names[r["dst"]] = r["m"]


def durable_set(ops, p, model):
    """Indices (into ops[:p]) of the state-changing ops a crash at p cannot
    lose under the model, and the list of those it may lose."""
    # Syncs that completed before p.
    file_cover = {}   # m -> highest covered log offset
    dir_cover = {}    # dir -> covered offset
    all_cover = -1    # syncfs
    meta_cover = -1   # ext4: journal commit
    for r in ops[:p]:
        k = r["kind"]
        if k == "sync":
            file_cover[r["m"]] = max(file_cover.get(r["m"], -1), r["covers"])
            meta_cover = max(meta_cover, r["covers"])
        elif k == "dsync":
            dir_cover[r["dir"]] = max(dir_cover.get(r["dir"], -1), r["covers"])
            meta_cover = max(meta_cover, r["covers"])
        elif k == "syncfs":
            all_cover = max(all_cover, r["covers"])
            meta_cover = max(meta_cover, r["covers"])
    durable, pending = [], []
    for r in ops[:p]:
        k = r["kind"]
        if k in ("sync", "dsync", "syncfs", "mark"):
            continue
        off = r["off"]
        if off < all_cover:
            d = True
        elif model == "strict":
            if k in ("write", "trunc"):
                d = off < file_cover.get(r["m"], -1)
            elif k == "rename":
                d = off < dir_cover.get(r["dir"], -1) and off < dir_cover.get(r["dir2"], -1)
            else:
                d = off < dir_cover.get(r["dir"], -1)
        else:  # ext4 data=ordered
            if is_meta(r):
                d = off < meta_cover
            else:
                d = off < file_cover.get(r["m"], -1)
        (durable if d else pending).append(r)
    return durable, pending


def build(ops, p, keep, torn=None):
    """The state after a crash at p: ops before p that are durable or in
    keep (a set of op indices), applied in call order; torn = (index, lo,
    hi): bytes lo..hi of that write did not reach the disk."""
    names, inodes = {}, {}
    for r in ops[:p]:
        if r["i"] in keep:
            hole = (torn[1], torn[2]) if torn and torn[0] == r["i"] else None
            apply(names, inodes, r, hole)
    return {n: bytes(inodes.get(m, b"")) for n, m in names.items()}


class Builder:
    """Builds crash states fast for increasing crash points: keeps the
    state all calls before p left (the volatile state) and replays only the
    files and names a variant changes."""

    def __init__(self, ops):
        self.ops = ops
        self.p = 0
        self.names, self.inodes = {}, {}
        self.by_m = {}
        self.name_ops = []
        for r in ops:
            if r["kind"] in ("write", "trunc"):
                self.by_m.setdefault(r["m"], []).append(r)
            elif r["kind"] in ("create", "rename", "unlink", "link"):
                self.name_ops.append(r)
                if r["kind"] == "create":
                    self.by_m.setdefault(r["m"], []).append(r)

    def advance(self, p):
        assert p >= self.p
        for r in self.ops[self.p:p]:
            apply(self.names, self.inodes, r)
        self.p = p

    def build(self, p, keep, pending, torn=None):
        """Same result as build(ops, p, keep, torn) for keep = durable ops
        plus some of pending (the ops durable_set gave as pending)."""
        self.advance(p)
        lost = {r["i"] for r in pending if r["i"] not in keep}
        redo = {r["m"] for r in pending if r["i"] in lost and r["kind"] in ("write", "trunc")}
        if torn:
            redo.add(self.ops[torn[0]]["m"])
        if any(r["kind"] in ("create", "rename", "unlink", "link") for r in pending if r["i"] in lost):
            names = {}
            for r in self.name_ops:
                if r["i"] >= p:
                    break
                if r["i"] in keep:
                    apply(names, {}, r)
        else:
            names = self.names
        inodes = {}
        for m in redo:
            b = {}
            for r in self.by_m.get(m, ()):
                if r["i"] >= p:
                    break
                if r["i"] in keep and r["kind"] != "create":
                    hole = (torn[1], torn[2]) if torn and torn[0] == r["i"] else None
                    apply({}, b, r, hole)
            inodes[m] = bytes(b.get(m, b""))
        return {n: inodes[m] if m in inodes else bytes(self.inodes.get(m, b"")) for n, m in names.items()}


def state_hash(st):
    h = hashlib.sha1()
    for n in sorted(st):
        h.update(n.encode() + b"\0" + hashlib.sha1(st[n]).digest())
    return h.hexdigest()


def tear_points(r):
    """Where a write can tear: 512-byte boundaries of the file inside it."""
    at, n = r["at"], len(r["data"])
    first = (at // SECTOR + 1) * SECTOR - at
    pts = list(range(first, n, SECTOR))
    if len(pts) > 4:
        pts = [pts[0], pts[len(pts) // 2], pts[-1]]
    return pts


def variants(ops, p, model, rng, per_point, out_pending=None):
    """Yields (label, keep set, torn) for the crash states at p."""
    durable, pending = durable_set(ops, p, model)
    if out_pending is not None:
        out_pending.extend(pending)
    base = {r["i"] for r in durable}
    allp = {r["i"] for r in pending}
    yield "all-pending-kept", base | allp, None
    if not pending:
        return
    yield "all-pending-lost", set(base), None
    if model == "ext4":
        meta = [r for r in pending if is_meta(r)]
        over = [r for r in pending if not is_meta(r)]
        overs = {r["i"] for r in over}
        cuts = list(range(len(meta) + 1))
        if len(cuts) > per_point:
            cuts = sorted(set([0, len(cuts) - 1] + rng.sample(cuts, per_point - 2)))
        for c in cuts:
            keepm = {r["i"] for r in meta[:c]}
            yield f"meta-prefix-{c}", base | keepm | overs, None
            yield f"meta-prefix-{c}-no-overwrites", base | keepm, None
        for r in rng.sample(over, min(len(over), per_point // 2)):
            yield f"overwrite-lost-{r['i']}", base | {x["i"] for x in meta} | (overs - {r["i"]}), None
            for t in tear_points(r):
                yield f"overwrite-torn-{r['i']}-{t}", base | {x["i"] for x in meta} | overs, \
                    (r["i"], t, len(r["data"]))
        # Appends are committed whole, but one whose commit did not happen
        # is lost with everything after it (the prefix cuts above).
        return
    # strict: subsets of the pending ops.
    n = len(pending)
    ks = list(range(1, n))
    for k in (rng.sample(ks, min(len(ks), per_point // 3)) if ks else []):
        yield f"tail-lost-from-{k}", base | {r["i"] for r in pending[:k]}, None
    for r in rng.sample(pending, min(n, per_point // 3)):
        yield f"lost-one-{r['i']}-{r['kind']}", base | (allp - {r["i"]}), None
    writes = [r for r in pending if r["kind"] == "write"]
    for r in rng.sample(writes, min(len(writes), per_point // 4)):
        n_w = len(r["data"])
        for t in tear_points(r):
            yield f"torn-{r['i']}-{t}", base | allp, (r["i"], t, n_w)
            before = {x["i"] for x in pending if x["i"] < r["i"]}
            yield f"torn-tail-{r['i']}-{t}", base | before | {r["i"]}, (r["i"], t, n_w)
            # The sectors of one write reach the disk in no set order: one
            # in the middle missing, the ones after it there.
            hi = min(n_w, t + SECTOR)
            if hi < n_w:
                yield f"sector-lost-{r['i']}-{t}", base | allp, (r["i"], t, hi)
    for j in range(per_point // 4):
        sub = {r["i"] for r in pending if rng.random() < 0.5}
        yield f"random-subset-{j}", base | sub, None
    # Reordering between syncs: a later op persists, an earlier one not.
    if n >= 2:
        for j in range(per_point // 4):
            a, b = sorted(rng.sample(range(n), 2))
            yield f"reorder-{pending[a]['i']}-lost-{pending[b]['i']}-kept", \
                base | (allp - {pending[a]["i"]}), None


# ---------------------------------------------------------- expectations ----

class Expect:
    """What the workload's marks before a crash point promise."""

    def __init__(self):
        self.must = {}       # key -> why it must read back
        self.gone = {}       # key -> why it must be absent
        self.gc = None       # ('active', id) | ('idle', None) | None (unknown)
        self.flags = {}      # key -> label of an expected (known) violation


def expectations(ops, p, keys):
    """Walks the marks before p (in order) and returns an Expect."""
    e = Expect()
    sent = {}
    corrupt = set()
    sync0 = set()  # keys whose first stored copy was ?sync=0 and no durable PUT created them
    for r in ops[:p]:
        if r["kind"] != "mark":
            continue
        w = r["text"].split()
        if w[0] == "send":
            rid, what = w[1], w[2:]
            sent[rid] = what
            verb = what[0]
            # A request in flight makes the state of its key unknown.
            if verb in ("PUT", "DELETE") and what[1] in e.gone and verb == "PUT":
                e.gone.pop(what[1], None)
            if verb == "DELETE":
                e.must.pop(what[1], None)
            if verb in ("GCEND", "GCCANCEL", "GCBEGIN"):
                e.gc = None
                if verb == "GCEND":
                    for k in what[2:]:
                        e.must.pop(k, None)
        elif w[0] == "ack":
            rid, status = w[1], int(w[2])
            what = sent.get(rid)
            if not what:
                continue
            verb = what[0]
            if verb == "PUT" and status in (200, 201):
                k, sync = what[1], what[2]
                if sync == "sync=1":
                    if k in corrupt:  # not quarantined yet: the old copy may stay
                        continue
                    e.must[k] = f"PUT acked {status} (request {rid})"
                    if k in sync0:
                        e.flags[k] = "reput-after-sync0"
                elif status == 201:
                    sync0.add(k)
                if status == 201 and sync == "sync=1":
                    sync0.discard(k)
            elif verb == "DELETE" and status in (200, 204):
                e.gone[what[1]] = f"DELETE acked {status} (request {rid})"
                e.must.pop(what[1], None)
            elif verb == "GET" and what[1] in corrupt:
                corrupt.discard(what[1])  # the read quarantined it
            elif verb == "GCBEGIN" and status == 200:
                e.gc = ("active", w[3])
            elif verb in ("GCEND", "GCCANCEL") and status == 200:
                e.gc = ("idle", None)
                if verb == "GCEND":
                    for k in what[2:]:
                        e.gone[k] = f"GC end acked (request {rid})"
        elif w[0] == "quarantined":
            corrupt.discard(w[1])
        elif w[0] == "corrupt":
            corrupt.add(w[1])
            e.must.pop(w[1], None)
    # Keys in flight in a request with no answer before p: only the byte
    # check applies. A PUT still unanswered may take effect after a DELETE
    # answered meanwhile (it was concurrent with it): its key may be back.
    answered = {w.split()[1] for w in (r["text"] for r in ops[:p] if r["kind"] == "mark")
                if w.startswith("ack ")}
    for rid, what in sent.items():
        if what[0] == "PUT" and rid not in answered:
            e.gone.pop(what[1], None)
    return e


# ------------------------------------------------------- ordering rules ----

REC = struct.Struct("<IBBBBQQQ32s")  # crc, type, flags, file, algo, offset, size, aux, digest
T_PUT, T_DEL, T_GC_BEGIN, T_GC_END, T_MOVE, T_GENERATION, T_GC_CANCEL = 2, 3, 4, 7, 8, 9, 10


def frame_len(size):
    return 64 + size + 4 * ((size + (1 << 20) - 1) >> 20)


def check_rules(ops):
    """Checks the recorded calls against the ordering rules of
    docs/FORMAT.md ("Durability ordering", D1..D8). Returns a list of
    (expected-label or "", message)."""
    out = []
    names = {}                      # name -> m (as the calls left them)
    syncs = {}                      # m -> [(sync record offset, covers)]
    dsyncs = []                     # [(dir sync record offset, covers)]
    writes = {}                     # m -> [(log off, at, end)]
    name_op = {}                    # m -> log off of the op that gave it its current name
    recs = []                       # (m, log off, type, file, offset, size, aux, digest hex, d1 exempt)
    sync0 = set()                   # keys ever sent with ?sync=0
    sent = {}
    first_ack = True
    pending_dsync = []              # (rule, log off of the op that needs a directory fsync before the next answer)
    removals = {}                   # key -> [(m, log off)]: writes of removal frame entries or in-place marks (D8)
    rm_header = {}                  # m -> end of the last removal frame header written (its entries follow)
    casd = []                       # (key, log off, data file, frame offset): in-place marks, checked at the end (D8)

    def synced(m, woff, before):
        return any(c > woff and so < before for so, c in syncs.get(m, ()))

    def dsynced(woff, before):
        return any(c > woff and so < before for so, c in dsyncs)

    def last_write(m, lo, hi, before):
        best = None
        for off, at, end in writes.get(m, ()):
            if off < before and at < hi and end > lo:
                best = off
        return best

    def data_inode(n):
        pre = f"data-{n:02d}.g"
        cands = [(nm, m) for nm, m in names.items() if nm.startswith(pre)]
        if not cands:
            return None
        return max(cands, key=lambda x: int(x[0][len(pre):]))[1]

    for r in ops:
        k, off = r["kind"], r["off"]
        if k == "create":
            names[r["name"]] = r["m"]
            name_op[r["m"]] = off
        elif k in ("rename", "link"):
            src_m = r["m"]
            if k == "rename" and r["src"] == "index.new" and r["dst"] == "index":
                lw = max((w[0] for w in writes.get(src_m, ())), default=-1)
                if lw >= 0 and not synced(src_m, lw, off):
                    out.append(("", f"D5: index.new renamed over index (log {off}) before an fdatasync of its last write"))
                pending_dsync.append(("D5", off))
                # D1 for the records the new index brings (fsck --repair
                # puts back frames a killed writer left in the page cache).
                for x in recs:
                    if x[0] != src_m or x[2] != T_PUT or x[8]:
                        continue
                    dm = data_inode(x[3])
                    lw = last_write(dm, x[4], x[4] + frame_len(x[5]), off) if dm else None
                    if lw is not None and not synced(dm, lw, off):
                        out.append(("", f"D1: index naming {x[7]} renamed in (log {off}) before its frame was fdatasynced"))
            if k == "link" and r["src"].startswith("node.tmp") and r["dst"] == "node":
                lw = max((w[0] for w in writes.get(src_m, ())), default=-1)
                if lw >= 0 and not synced(src_m, lw, off):
                    out.append(("", f"D6: node linked (log {off}) before an fsync of node.tmp's last write"))
                pending_dsync.append(("D6", off))
            names[r["dst"]] = src_m
            name_op[src_m] = off
            if k == "rename":
                names.pop(r["src"], None)
        elif k == "unlink":
            nm = r["name"]
            names.pop(nm, None)
            if nm.startswith("data-"):
                n, g = int(nm[5:7]), int(nm.split(".g")[1])
                gens = [x for x in recs if x[2] == T_GENERATION and x[3] == n and x[6] > g]
                if gens and not any(synced(x[0], x[1], off) for x in gens):
                    out.append(("", f"D4: {nm} unlinked (log {off}) before GENERATION({n}, {gens[-1][6]}) was synced"))
        elif k == "write":
            writes.setdefault(r["m"], []).append((off, r["at"], r["at"] + len(r["data"])))
            nm = next((x for x, m in names.items() if m == r["m"]), None)
            if nm and nm.startswith("data-"):
                data = r["data"]
                if data[:4] == b"CASR" and len(data) >= 64:
                    rm_header[r["m"]] = r["at"] + 64
                    ents = data[64:]
                elif rm_header.get(r["m"]) == r["at"]:
                    ents = data
                else:
                    ents = b""
                named = [ents[j:j + 20].hex() for j in range(0, len(ents) - len(ents) % 40, 40)]
                if data[:4] == b"CASD" and len(data) == 64:  # a frame marked removed in place
                    key = data[32:52].hex()
                    removals.setdefault(key, []).append((r["m"], off))
                    # Also a write giving up its own unrecorded frame, or a
                    # corrupt copy taken out (DEL aux 1): told at the end.
                    casd.append((key, off, int(nm[5:7]), r["at"]))
                for key in named:
                    removals.setdefault(key, []).append((r["m"], off))
                    # D8: the index record of the removal (DEL of the key, or a
                    # GC_END) was durable before the data file names it removed.
                    if not any((x[2] == T_DEL and x[7] == key or x[2] == T_GC_END)
                               and synced(x[0], x[1], off) for x in recs):
                        out.append(("", f"D8: removal of {key} written into a data file (log {off}) before its DEL / GC_END record was fdatasynced"))
                continue
            if nm not in ("index", "index.new") or r["at"] % 64 or len(r["data"]) % 64:
                continue
            for j in range(0, len(r["data"]), 64):
                crc, typ, flags, f, algo, o, size, aux, dg = REC.unpack_from(r["data"], j)
                key = dg[:20].hex()
                exempt = key in sync0
                recs.append((r["m"], off, typ, f, o, size, aux, key, exempt))
                if nm != "index":
                    continue  # a snapshot copies the table: D5 covers it
                if typ == T_PUT and not exempt:
                    dm = data_inode(f)
                    lw = last_write(dm, o, o + frame_len(size), off) if dm else None
                    if dm is None or lw is None:
                        out.append(("", f"D1: PUT record of {key} (log {off}) describes bytes never written"))
                    elif not synced(dm, lw, off):
                        out.append(("", f"D1: PUT record of {key} written (log {off}) before its frame was fdatasynced"))
                if typ == T_GENERATION:
                    dm = names.get(f"data-{f:02d}.g{aux}")
                    lw = max((w[0] for w in writes.get(dm, ())), default=-1) if dm else -1
                    if dm is None:
                        out.append(("", f"D3: GENERATION({f}, {aux}) written (log {off}) without its data file"))
                    else:
                        if lw >= 0 and not synced(dm, lw, off):
                            out.append(("", f"D3: GENERATION({f}, {aux}) written (log {off}) before data-{f:02d}.g{aux} was fdatasynced"))
                        if not dsynced(name_op[dm], off):
                            out.append(("", f"D3: GENERATION({f}, {aux}) written (log {off}) before the directory was fsynced after data-{f:02d}.g{aux} was created"))
        elif k == "sync":
            syncs.setdefault(r["m"], []).append((off, r["covers"]))
        elif k in ("dsync", "syncfs"):
            dsyncs.append((off, r["covers"]))
            if k == "syncfs":
                for m in list(syncs) + list(writes):
                    syncs.setdefault(m, []).append((off, r["covers"]))
        elif k == "mark":
            w = r["text"].split()
            if w[0] == "send":
                sent[w[1]] = w[2:]
                if w[2] == "PUT" and w[4] == "sync=0":
                    sync0.add(w[3])
                continue
            if w[0] != "ack":
                continue
            what, status = sent.get(w[1]), int(w[2])
            if not what or status >= 300:
                continue
            for rule, at in pending_dsync:
                if not dsynced(at, off):
                    out.append(("", f"{rule}: answered (log {off}) before the directory was fsynced after the call at log {at}"))
            pending_dsync = [x for x in pending_dsync if not dsynced(x[1], off)]
            if first_ack:
                first_ack = False
                for nm, m in names.items():
                    if (nm == "index" or nm.startswith("data-")) and not dsynced(name_op[m], off):
                        out.append(("", f"D7: first answer (log {off}) before the directory was fsynced after {nm} was created"))
            verb = what[0]
            if verb == "PUT" and what[2] == "sync=1":
                want = lambda x, key=what[1]: x[2] == T_PUT and x[7] == key
            elif verb == "DELETE":
                want = lambda x, key=what[1]: x[2] == T_DEL and x[7] == key
            elif verb == "GCBEGIN":
                want = lambda x, gid=int(w[3]): x[2] == T_GC_BEGIN and x[6] == gid
            elif verb == "GCEND":
                want = lambda x, gid=int(what[1]): x[2] == T_GC_END and x[6] == gid
            else:
                continue
            found = [x for x in recs if want(x)]
            label = "reput-after-sync0" if verb == "PUT" and what[1] in sync0 else ""
            if not found:
                out.append((label, f"D2: {verb} {what[1] if len(what) > 1 else ''} answered {status} (log {off}) with no index record for it"))
                continue
            x = found[-1]
            if verb == "DELETE" and not any(synced(m, woff, off) for m, woff in removals.get(what[1], ())):
                out.append(("", f"D8: DELETE {what[1]} answered {status} (log {off}) before a removal frame naming it was fdatasynced"))
            if not synced(x[0], x[1], off):
                out.append((label, f"D2: {verb} {what[1] if len(what) > 1 else ''} answered {status} (log {off}) before its index record (log {x[1]}) was fdatasynced"))
            elif verb == "PUT" and x[8]:
                dm = data_inode(x[3])
                lw = last_write(dm, x[4], x[4] + frame_len(x[5]), off) if dm else None
                if dm is None or lw is None or not synced(dm, lw, off):
                    out.append((label, f"D2: PUT {what[1]} answered {status} (log {off}): its record was written with ?sync=0 and its frame was never fdatasynced"))
    # D8 for in-place marks: a mark of a frame no PUT / MOVE record had named
    # is a write giving up its own frame, and a frame whose key then gets a
    # DEL with aux 1 is a corrupt copy taken out (the scrubber's order):
    # neither is a removal of rule D8.
    for key, off, f, at in casd:
        if not any(x[2] in (T_PUT, T_MOVE) and x[3] == f and x[4] == at and x[1] < off for x in recs):
            continue
        if any(x[2] == T_DEL and x[6] == 1 and x[7] == key for x in recs):
            continue
        if not any((x[2] == T_DEL and x[7] == key or x[2] == T_GC_END)
                   and synced(x[0], x[1], off) for x in recs):
            out.append(("", f"D8: removal of {key} marked in place in a data file (log {off}) before its DEL / GC_END record was fdatasynced"))
    return out


# ---------------------------------------------------------------- checking ----

class Checker:
    def __init__(self, build, workdir, log):
        self.storaged = os.path.join(build, "storaged", "ca-cas-storaged")
        self.cli = os.path.join(build, "ca-cas", "ca-cas")
        self.workdir = workdir
        self.log = log

    def start(self, d):
        port = free_port()
        logp = os.path.join(self.workdir, "check.log")
        lf = open(logp, "wb")
        proc = subprocess.Popen([self.storaged, "--dir", d, "--listen", f"127.0.0.1:{port}",
                                 "--log-level", "warn", "--scrub-rate", "0"],
                                stdout=lf, stderr=subprocess.STDOUT)
        lf.close()
        deadline = time.time() + 20
        while time.time() < deadline:
            if proc.poll() is not None:
                with open(logp, "rb") as f:
                    return None, port, f.read().decode(errors="replace")
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/healthz")
                c.getresponse().read()
                c.close()
                return proc, port, ""
            except OSError:
                time.sleep(0.01)
        proc.kill()
        proc.wait()
        return None, port, "did not answer /healthz in 20 s"

    def check(self, st, expects, keys):
        """Writes state st to a directory, starts storaged on it and checks
        every Expect in expects. Returns a list of violation strings (with
        their expected-violation label, if any)."""
        d = tempfile.mkdtemp(prefix="state-", dir=self.workdir)
        try:
            for n, data in st.items():
                path = os.path.join(d, n)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
            proc, port, why = self.start(d)
            out = []
            if proc is None:
                if "fsck" not in why or "--repair" not in why:
                    return [("", f"storaged refused to start without naming fsck --repair: {why.strip()[-300:]}")]
                r = subprocess.run([self.cli, "fsck", d, "--repair"], capture_output=True, timeout=120)
                proc, port, why2 = self.start(d)
                if proc is None:
                    return [("", f"storaged refused to start, and again after fsck --repair "
                                 f"(fsck exit {r.returncode}): {why2.strip()[-300:]}")]
                out.append(("note", "needed fsck --repair: " + why.strip().splitlines()[-1][:200]))
            try:
                got = {}
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                for k in keys:
                    c.request("GET", f"/objects/{k}")
                    resp = c.getresponse()
                    body = resp.read()
                    got[k] = (resp.status, body)
                c.request("GET", "/gc")
                resp = c.getresponse()
                gc = json.loads(resp.read())
                c.close()
            finally:
                proc.kill()
                proc.wait()
            for k, (status, body) in got.items():
                if status == 200 and sha1(body) != k:
                    out.append(("", f"object {k} served with wrong bytes ({len(body)} bytes)"))
            for e in expects:
                for k, why in e.must.items():
                    if k not in got:
                        continue
                    status = got[k][0]
                    if status != 200:
                        out.append((e.flags.get(k, ""), f"object {k} lost (GET {status}); {why}"))
                for k, why in e.gone.items():
                    if k in got and got[k][0] == 200:
                        out.append(("", f"object {k} came back; {why}"))
                if e.gc:
                    if e.gc[0] == "active" and (not gc["active"] or gc["id"] != e.gc[1]):
                        out.append(("", f"GC cycle {e.gc[1]} was acknowledged as begun; after the crash /gc says {gc}"))
                    if e.gc[0] == "idle" and gc["active"]:
                        out.append(("", f"GC end was acknowledged; after the crash /gc says {gc}"))
            return out
        finally:
            shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------- workloads ----

class Driver:
    """Runs requests against the recorded storaged and marks them in the log."""

    def __init__(self, port, log, storedir):
        self.port, self.log, self.dir = port, log, storedir
        self.n = 0
        self.lock = threading.Lock()
        self.keys = {}  # key -> (seed, size)
        self.sizes = {}  # seed -> size
        self.churn = set()  # keys of bulk traffic: only a sample is read back per state
        self.local = threading.local()

    def conn(self):
        c = getattr(self.local, "c", None)
        if c is None:
            c = self.local.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        return c

    def req(self, method, path, body=None, mark=None):
        with self.lock:
            self.n += 1
            rid = str(self.n)
        self.log.mark(f"send {rid} {mark}")
        c = self.conn()
        c.request(method, path, body=body)
        r = c.getresponse()
        data = r.read()
        extra = ""
        if mark.startswith("GCBEGIN") and r.status == 200:
            extra = " " + json.loads(data)["id"]
        self.log.mark(f"ack {rid} {r.status}{extra}")
        return r.status, data

    def obj(self, seed, size):
        data = blob(seed, size)
        k = sha1(data)
        with self.lock:
            self.keys[k] = (seed, size)
            self.sizes[seed] = size
        return k, data

    def put(self, seed, size, sync=True, churn=False):
        k, data = self.obj(seed, size)
        if churn:
            with self.lock:
                self.churn.add(k)
        q = "" if sync else "?sync=0"
        st, _ = self.req("PUT", f"/objects/{k}{q}", data,
                         f"PUT {k} sync={1 if sync else 0}" + (" bulk" if churn else ""))
        if st not in (200, 201):
            raise RuntimeError(f"PUT {k} answered {st}")
        return k

    def delete(self, k):
        st, _ = self.req("DELETE", f"/objects/{k}", None, f"DELETE {k}")
        if st not in (200, 204):
            raise RuntimeError(f"DELETE answered {st}")

    def get(self, k):
        return self.req("GET", f"/objects/{k}", None, f"GET {k}")

    def parallel(self, fn, items, threads=4):
        items = list(items)
        errs = []

        def run(chunk):
            try:
                for it in chunk:
                    fn(it)
            except Exception as ex:  # reported below
                errs.append(ex)
        ts = [threading.Thread(target=run, args=(items[i::threads],)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if errs:
            raise errs[0]


SIZES = [1, 100, 700, 4096, 5000, 20000, 70000]


def wl_puts(d, rng):
    """Concurrent PUTs of new objects, some repeated, some ?sync=0 then
    durable re-PUT, a few DELETEs."""
    seeds = list(range(1000, 1024))
    d.put(999, 0)  # the empty object
    d.parallel(lambda s: d.put(s, rng.choice(SIZES)), seeds)
    d.parallel(lambda s: d.put(s, d.keys_size(s)), seeds[:6])  # existing
    k0 = d.put(2000, 3000, sync=False)
    d.put(2000, 3000, sync=True)  # durable re-PUT of a ?sync=0 object
    d.put(2002, 3000, sync=False)
    d.put(2001, 9000, sync=True)  # its index sync covers 2002's record, not its data
    d.put(2002, 3000, sync=True)
    d.delete(sha1(blob(1003, d.keys_size(1003))))
    d.delete(sha1(blob(1004, d.keys_size(1004))))
    d.put(1003, d.keys_size(1003))  # back after a delete
    d.put(1500, 1_300_000)  # two blocks, streamed: payload, table, then the header
    return k0


def wl_gc(d, rng):
    """A GC cycle: begin, mark the live half, end; PUTs during the cycle."""
    seeds = list(range(3000, 3016))
    d.parallel(lambda s: d.put(s, rng.choice(SIZES)), seeds)
    st, body = d.req("POST", "/gc/begin", b"", "GCBEGIN")
    gid = json.loads(body)["id"]
    live = [sha1(blob(s, d.keys_size(s))) for s in seeds[:8]]
    st, _ = d.req("POST", "/gc/mark", ("\n".join(live[:4]) + "\n").encode(), "GCMARK")
    d.put(seeds[4], d.keys_size(seeds[4]))   # a write unmarks
    d.get(live[5])                            # so does a read
    d.put(3100, 4096)                         # new during the cycle
    st, _ = d.req("POST", "/gc/mark", ("\n".join(live[6:]) + "\n").encode(), "GCMARK")
    garbage = [sha1(blob(s, d.keys_size(s))) for s in seeds[8:]]
    st, _ = d.req("POST", f"/gc/end?id={gid}", b"", "GCEND " + gid + " " + " ".join(garbage))
    if st != 200:
        raise RuntimeError(f"gc end answered {st}")
    d.put(3101, 700)
    st, body = d.req("POST", "/gc/begin", b"", "GCBEGIN")  # left active
    d.put(3102, 5000)


def wl_compact(d, rng):
    """Deletes then POST /compact?wait=1 (data files rewritten, index
    snapshot at the end since the index is mostly dead records), with PUTs
    around it."""
    # Writers take the shortest data file: 150 objects leave about three
    # in each of the 50, so compaction has live frames to move.
    seeds = list(range(4000, 4150))
    d.parallel(lambda s: d.put(s, rng.choice([100, 700, 4096, 5000])), seeds)
    for s in seeds[::3]:
        d.delete(sha1(blob(s, d.keys_size(s))))
    d.put(4100, 20000)
    st, _ = d.req("POST", "/compact?wait=1", b"", "COMPACT")
    if st != 200:
        raise RuntimeError(f"compact answered {st}")
    d.put(4101, 5000)
    d.delete(sha1(blob(4001, d.keys_size(4001))))
    for s in seeds[4:30:3]:
        d.delete(sha1(blob(s, d.keys_size(s))))
    # Again, without waiting: PUTs and DELETEs (of objects being moved) run
    # beside it; then wait for it (bounded).
    st, _ = d.req("POST", "/compact", b"", "COMPACT")
    if st not in (200, 202):
        raise RuntimeError(f"compact answered {st}")
    beside = [("put", 4200 + i) for i in range(12)] + \
        [("del", s) for s in seeds[2:60:3]]
    d.parallel(lambda it: d.put(it[1], 700) if it[0] == "put"
               else d.delete(sha1(blob(it[1], d.keys_size(it[1])))), beside, threads=3)
    for _ in range(600):
        c = d.conn()
        c.request("GET", "/compact")
        if not json.loads(c.getresponse().read())["running"]:
            break
        time.sleep(0.05)
    else:
        raise RuntimeError("compaction did not finish in 30 s")
    d.put(4103, 4096)
    d.put(4102, 100)


def wl_snapshot(d, rng):
    """The index snapshot: many records for few live objects (a GC cycle
    active, so the snapshot carries marks), then a compaction that rewrites
    the index; writes go on into the new index."""
    seeds = list(range(5000, 5012))
    d.parallel(lambda s: d.put(s, rng.choice([1, 100, 700])), seeds)
    # The snapshot happens when index records > 2 * (objects + 52) + 4096:
    # churn one object in and out.
    churn = [(6000 + i, 64) for i in range(2200)]
    def cycle(item):
        k = d.put(item[0], item[1], sync=False, churn=True)
        d.req("DELETE", f"/objects/{k}", None, f"DELETE {k} bulk")
    d.parallel(cycle, churn, threads=4)
    st, body = d.req("POST", "/gc/begin", b"", "GCBEGIN")
    live = [sha1(blob(s, d.keys_size(s))) for s in seeds[:6]]
    d.req("POST", "/gc/mark", ("\n".join(live) + "\n").encode(), "GCMARK")
    d.put(5100, 4096)
    st, _ = d.req("POST", "/compact?wait=1", b"", "COMPACT")
    d.put(5101, 700)
    d.put(5102, 5000)


def wl_scrub(d, rng):
    """A corrupted object found by a read is quarantined (a DEL record);
    writes go on."""
    seeds = list(range(7000, 7008))
    d.parallel(lambda s: d.put(s, rng.choice([700, 4096, 20000])), seeds)
    victim = sha1(blob(7002, d.keys_size(7002)))
    d.corrupt(victim)
    st, _ = d.get(victim)
    d.put(7100, 4096)
    d.put(7002, d.keys_size(7002))  # stored again after the quarantine
    d.put(7101, 100)
    # The scrubber's quarantine: another object rots while the daemon is
    # down; restarted with the scrubber on, it finds it (the restart's own
    # recovery calls are recorded too).
    victim2 = sha1(blob(7005, d.keys_size(7005)))
    d.stop()
    d.corrupt(victim2)
    d.restart(["--scrub-rate", "100"])
    for _ in range(400):  # bounded: 20 s at most
        c = d.conn()
        c.request("GET", "/status")
        stt = json.loads(c.getresponse().read())
        if stt["scrub"]["corrupt"] >= 1:
            break
        time.sleep(0.05)
    else:
        raise RuntimeError("the scrubber did not find the rotten object")
    d.log.mark(f"quarantined {victim2}")
    d.put(7102, 4096)
    d.put(7005, d.keys_size(7005))  # stored again after the quarantine


def wl_restart(d, rng):
    """Concurrent PUTs cut by kill -9 after the 20th answer (the page cache
    keeps what was not synced), a restart whose recovery calls are recorded
    (cuts of torn tails, leftovers), then more PUTs and a DELETE on the
    recovered store."""
    seeds = list(range(8000, 8060))
    count = [0]
    killed = threading.Event()

    def one(s):
        if killed.is_set():
            return
        try:
            d.put(s, [100, 700, 4096, 20000][s % 4], sync=(s % 5 != 0))
        except (OSError, http.client.HTTPException, RuntimeError):
            return  # cut by the kill: sent, never answered
        with d.lock:
            count[0] += 1
            n = count[0]
        if n == 20:
            killed.set()
            d.stop()
    d.parallel(one, seeds, threads=4)
    d.restart(["--scrub-rate", "0"])
    d.put(8100, 5000)
    d.put(8101, 700)
    acked = [k for k, (s, n) in d.keys.items() if 8000 <= s < 8060]
    st, _ = d.req("DELETE", f"/objects/{acked[0]}", None, f"DELETE {acked[0]}")
    d.put(8102, 4096)


def wl_adopt(d, rng):
    """An object whose frame only the page cache holds and whose index record
    is gone, as a storaged killed between its frame's write and its sync
    leaves it (the kill is made deterministic: the driver takes the record
    out and writes the frame's bytes again, unsynced). The restart adopts
    the frame: its data file must be fdatasynced before the PUT record it
    appends (rule D1), or a power cut after the restart leaves an index
    naming bytes that never reached the disk. Also fsck --repair's."""
    for s in range(8200, 8206):
        d.put(s, SIZES[s % len(SIZES)])
    k = d.put(8210, 4096)
    d.put(8211, 100)
    d.stop()
    d.lose_record(k)
    d.restart(["--scrub-rate", "0"])
    d.put(8212, 700)
    k2 = d.put(8213, 5000)
    d.stop()
    d.lose_record(k2)
    d.fsck_repair()
    d.restart(["--scrub-rate", "0"])
    d.put(8214, 700)


def wl_refused(d, rng):
    """A PUT whose body is still arriving when a PUT of the same bytes and
    a DELETE of the key are answered: it is refused 409 (the delete reached
    the store while it was in flight), and as it is stamped after the delete
    (X-CAS-Timestamp 30 s ahead: a balancer whose clock is ahead), only its
    frame's in-place removal mark keeps a restart from indexing it again.
    That mark must be durable before the 409 (else the acknowledged DELETE
    is undone after a power cut). Three rounds, sizes 700 B..70 KB."""
    d.put(8300, 100)
    for seed in (8310, 8311, 8312):
        size = [700, 20000, 70000][seed - 8310]
        k, data = d.obj(seed, size)
        ahead = int(time.time() * 1e6) + 30_000_000
        s = socket.create_connection(("127.0.0.1", d.port), timeout=30)
        try:
            with d.lock:
                d.n += 1
                rid = str(d.n)
            d.log.mark(f"send {rid} PUT {k} sync=1")
            s.sendall(f"PUT /objects/{k} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n"
                      f"X-CAS-Timestamp: {ahead}\r\n\r\n".encode() + data[:size // 2])
            time.sleep(0.2)  # the body is arriving: the write has begun
            d.put(seed, size)
            d.delete(k)
            s.sendall(data[size // 2:])
            head = b""
            while b"\r\n\r\n" not in head:
                got = s.recv(4096)
                if not got:
                    break
                head += got
            status = int(head.split()[1]) if head.startswith(b"HTTP/") else 0
            d.log.mark(f"ack {rid} {status}")
            if status != 409:
                raise RuntimeError(f"the in-flight PUT of {k} answered {status}, not 409")
        finally:
            s.close()
    d.put(8301, 4096)


WORKLOADS = {"adopt": wl_adopt, "refused": wl_refused, "restart": wl_restart, "puts": wl_puts, "gc": wl_gc, "compact": wl_compact, "snapshot": wl_snapshot,
             "scrub": wl_scrub}


def keys_size(self, seed):
    return self.sizes[seed]


Driver.keys_size = keys_size


def corrupt(self, key):
    """Flips a byte of key's payload in its data file, as bit rot would, and
    logs that as a durable write (it is not the daemon's doing)."""
    # Find the frame: walk the index for the PUT record of key.
    with open(os.path.join(self.dir, "index"), "rb") as f:
        idx = f.read()
    digest = bytes.fromhex(key)
    loc = None
    for at in range(64, len(idx) - 63, 64):
        rec = idx[at:at + 64]
        if rec[4] == 2 and rec[32:52] == digest:
            loc = (rec[6], struct.unpack_from("<Q", rec, 8)[0])
    if loc is None:
        raise RuntimeError("corrupt: object not in the index")
    name = None
    for n in os.listdir(self.dir):
        if n.startswith(f"data-{loc[0]:02d}.g"):
            name = n
    path = os.path.join(self.dir, name)
    fd = os.open(path, os.O_RDWR)
    try:
        off = loc[1] + 64 + 10
        b = os.pread(fd, 1, off)
        nb = bytes([b[0] ^ 0xFF])
        os.pwrite(fd, nb, off)
        os.fsync(fd)
        ino = os.fstat(fd).st_ino
    finally:
        os.close(fd)
    self.log.mark(f"corrupt {key}")
    before = self.log.size()
    self.log.record(OP_WRITE, name, ino=ino, a=off, data=nb)
    self.log.record(OP_FSYNC, name, ino=ino, b=self.log.size())
    del before


Driver.corrupt = corrupt


def lose_record(self, key):
    """With the storaged stopped: cuts the index back to just before key's
    PUT record (zeroes it and every record after it: the file is
    preallocated) and writes key's frame bytes again, both logged unsynced
    (the state a writer killed before its fdatasync and record leaves, with
    the frame in the page cache only)."""
    ipath = os.path.join(self.dir, "index")
    with open(ipath, "rb") as f:
        idx = f.read()
    digest = bytes.fromhex(key)
    at = next(a for a in range(64, len(idx) - 63, 64)
              if idx[a + 4] == T_PUT and idx[a + 32:a + 52] == digest)
    n, off = idx[at + 6], struct.unpack_from("<Q", idx, at + 8)[0]
    size = struct.unpack_from("<Q", idx, at + 16)[0]
    name = next(x for x in os.listdir(self.dir) if x.startswith(f"data-{n:02d}.g"))
    self.log.mark(f"lose {key}")
    fd = os.open(ipath, os.O_RDWR)
    try:
        end = max(a + 64 for a in range(at, len(idx) - 63, 64) if any(idx[a:a + 64]))
        os.pwrite(fd, bytes(end - at), at)
        self.log.record(OP_WRITE, "index", ino=os.fstat(fd).st_ino, a=at, data=bytes(end - at))
    finally:
        os.close(fd)
    fd = os.open(os.path.join(self.dir, name), os.O_RDWR)
    try:
        frame = os.pread(fd, frame_len(size), off)
        os.pwrite(fd, frame, off)
        self.log.record(OP_WRITE, name, ino=os.fstat(fd).st_ino, a=off, data=frame)
    finally:
        os.close(fd)


Driver.lose_record = lose_record


def reconcile(store, log):
    """After a kill -9: makes the log say what the directory holds. The
    recorder logs a call after it returns, so a kill between the two leaves
    one call done but unlogged (the last one: every logged call holds the
    recorder's lock). Each regular file whose bytes differ from what the log
    gives it gets a WRITE (or TRUNC, or a create) from the driver, at the
    end of the log, unsynced: exactly that missing call."""
    names, inodes = {}, {}
    for r in resolve(parse_log(log.path)):
        if r["kind"] in ("create", "write", "trunc", "rename", "unlink", "link"):
            apply(names, inodes, r)
    for nm in sorted(os.listdir(store)):
        path = os.path.join(store, nm)
        if not os.path.isfile(path) or nm == "LOCK":
            continue
        with open(path, "rb") as f:
            real = f.read()
        ino = os.stat(path).st_ino
        m = names.get(nm)
        model = bytes(inodes[m]) if m is not None else None
        if model == real:
            continue
        if model is None:
            log.record(OP_OPEN, nm, ino=ino, a=os.O_CREAT | os.O_WRONLY, b=0)
            model = b""
        if len(real) < len(model):
            log.record(OP_TRUNC, nm, ino=ino, a=len(real))
            model = model[:len(real)]
        lo = next((i for i in range(len(model)) if model[i] != real[i]), len(model))
        hi = len(real)
        if hi == len(model):
            while hi > lo and model[hi - 1] == real[hi - 1]:
                hi -= 1
        if hi > lo:
            log.record(OP_WRITE, nm, ino=ino, a=lo, data=real[lo:hi])
        if os.environ.get("EXPLORE_DEBUG"):
            print(f"reconcile: {nm}: logged {len(model)} bytes, holds {len(real)}, wrote [{lo}, {hi})",
                  file=sys.stderr)


def record(build, workload, workdir, seed):
    store = os.path.join(workdir, f"rec-{workload}")
    os.makedirs(store)
    logp = os.path.join(workdir, f"{workload}.log")
    log = Log(logp)
    port = free_port()
    env = dict(os.environ)
    env.update(LD_PRELOAD=os.path.join(build, "tests", "crash", "libcascrashrec.so"),
               CRASH_DIR=store, CRASH_LOG=logp,
               ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
    lf = open(os.path.join(workdir, f"{workload}.daemon.log"), "wb")
    proc = subprocess.Popen([os.path.join(build, "storaged", "ca-cas-storaged"), "--dir", store,
                             "--listen", f"127.0.0.1:{port}", "--log-level", "info",
                             "--scrub-rate", "0"], stdout=lf, stderr=subprocess.STDOUT, env=env)
    lf.close()
    try:
        deadline = time.time() + 20
        while True:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("recorded storaged did not start")
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/healthz")
                c.getresponse().read()
                c.close()
                break
            except OSError:
                time.sleep(0.02)
        d = Driver(port, log, store)

        def stop():
            proc.kill()
            proc.wait()
            reconcile(store, log)

        def restart(extra):
            nonlocal proc
            stop()
            lf = open(os.path.join(workdir, f"{workload}.daemon.log"), "ab")
            proc = subprocess.Popen([os.path.join(build, "storaged", "ca-cas-storaged"), "--dir", store,
                                     "--listen", f"127.0.0.1:{port}", "--log-level", "info"] + extra,
                                    stdout=lf, stderr=subprocess.STDOUT, env=env)
            lf.close()
            d.local = threading.local()
            for _ in range(1000):
                if proc.poll() is not None:
                    with open(os.path.join(workdir, f"{workload}.daemon.log"), "rb") as f:
                        tail = f.read()[-600:].decode(errors="replace")
                    raise RuntimeError("restarted storaged exited:\n" + tail)
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    c.request("GET", "/healthz")
                    c.getresponse().read()
                    c.close()
                    return
                except OSError:
                    time.sleep(0.02)
            raise RuntimeError("restarted storaged did not come up")
        def fsck_repair():
            # Recorded like the daemon (same log): its syncs and the index it
            # writes are part of the crash states.
            log.mark("fsck --repair")
            r = subprocess.run([os.path.join(build, "ca-cas", "ca-cas"), "fsck", store, "--repair"],
                               capture_output=True, env=env, timeout=120)
            if r.returncode not in (0, 1):
                raise RuntimeError(f"fsck --repair exited {r.returncode}: {r.stderr[-300:]!r}")
        d.restart, d.stop, d.fsck_repair = restart, stop, fsck_repair
        WORKLOADS[workload](d, random.Random(seed))
        keys = dict(d.keys)
        for k in d.churn:
            keys[k] = None
    finally:
        proc.kill()  # power cut at the end: nothing after the last call
        proc.wait()
        log.close()
    return logp, keys


# -------------------------------------------------------------- exploring ----

def crash_points(ops, rng, sample, limit):
    """Every sync, every mark, the end, and a sample of the other ops; when
    there are more than limit, the ones around directory changes (creates,
    renames, links, unlinks, directory syncs: compaction and the index
    snapshot) and around GC and compaction requests first, then a sample."""
    pts, key = set(), set()
    sent = {}
    for r in ops:
        if r["kind"] == "mark":
            w = r["text"].split()
            if w[0] == "send":
                sent[w[1]] = w[-1] == "bulk"
            elif w[0] == "ack" and not sent.get(w[1], True):
                key.add(r["i"] + 1)  # just after an answer to a request not of the bulk
            elif w[0] in ("corrupt", "quarantined"):
                key.add(r["i"] + 1)
        if r["kind"] in ("sync", "dsync", "syncfs", "mark"):
            pts.add(r["i"] + 1)   # just after it
            pts.add(r["i"])       # just before it
        if r["kind"] in ("rename", "link", "unlink", "dsync", "syncfs") or \
                (r["kind"] == "mark" and any(w in r["text"] for w in ("GC", "COMPACT", "corrupt"))):
            key.update((r["i"], r["i"] + 1, r["i"] + 2))
    others = [r["i"] + 1 for r in ops if r["i"] + 1 not in pts]
    pts.update(rng.sample(others, min(len(others), sample)))
    pts.add(len(ops))
    pts = sorted(x for x in pts if x <= len(ops))
    if limit and len(pts) > limit:
        key = sorted(x for x in key if x <= len(ops))
        if len(key) > limit * 3 // 4:
            key = rng.sample(key, limit * 3 // 4)
        rest = [x for x in pts if x not in set(key)]
        pts = sorted(set(key) | set(rng.sample(rest, min(len(rest), limit - len(key)))) | {len(ops)})
    return pts


def explore(args, workload, checker, tally, deadline):
    rng = random.Random(args.seed)
    logp, keys = record(args.build, workload, args.workdir, args.seed)
    ops = resolve(parse_log(logp))
    if not any(r["kind"] == "sync" for r in ops) or not any(r["kind"] == "create" for r in ops):
        raise RuntimeError(f"{workload}: the recorder logged no file creation or sync: was it preloaded?")
    pts = crash_points(ops, rng, args.sample, args.max_points)
    for tag, v in check_rules(ops):
        key = (workload, tag, v)
        if key in tally["seen"]:
            continue
        tally["seen"].add(key)
        entry = dict(workload=workload, state="ordering rules", expected=tag or None, what=v)
        (tally["expected"] if tag in EXPECTED else tally["violations"]).append(entry)
        print(("EXPECTED " + tag + ": " if tag else "VIOLATION: ") + f"[{workload}] ordering rules: {v}", flush=True)
    states = {}  # hash -> (state, [Expect], first label)
    built = 0
    builder = Builder(ops)
    for p in pts:
        exp = expectations(ops, p, keys)
        for model in args.models:
            pend = []
            for label, keep, torn in variants(ops, p, model, rng, args.per_point, pend):
                st = builder.build(p, keep, pend, torn)
                built += 1
                h = state_hash(st)
                if h not in states:
                    states[h] = [st, [], f"{model} p={p}/{len(ops)} {label}"]
                ent = states[h]
                if all(not same_expect(exp, e) for e in ent[1]):
                    ent[1].append(exp)
    tally["built"] += built
    tally["distinct"] += len(states)
    order = list(states.items())
    rng.shuffle(order)
    if args.budget_states:
        order = order[:args.budget_states]
    checked = 0
    for h, (st, exps, label) in order:
        if time.time() > deadline:
            tally["timed_out"] = True
            break
        bulk = [k for k, v in keys.items() if v is None]
        ks = sorted(k for k, v in keys.items() if v is not None)
        ks += rng.sample(bulk, min(len(bulk), 40))
        vs = checker.check(st, exps, ks)
        checked += 1
        for tag, v in vs:
            if tag == "note":
                tally["repaired"] += 1
                continue
            key = (workload, tag, v.split(";")[0])
            if key in tally["seen"]:
                continue
            tally["seen"].add(key)
            entry = dict(workload=workload, state=label, expected=tag or None, what=v)
            if tag in EXPECTED:
                tally["expected"].append(entry)
            else:
                tally["violations"].append(entry)
                if args.keep:
                    save_state(args.keep, workload, label, st, v)
            print(("EXPECTED " + tag + ": " if tag else "VIOLATION: ") + f"[{workload}] {label}: {v}",
                  flush=True)
    tally["checked"] += checked
    print(f"{workload}: {len(ops)} ops, {len(pts)} crash points, {built} states built, "
          f"{len(states)} distinct, {checked} checked", flush=True)


def same_expect(a, b):
    return a.must == b.must and a.gone == b.gone and a.gc == b.gc


def save_state(root, workload, label, st, why):
    d = os.path.join(root, f"{workload}-{hashlib.sha1(label.encode()).hexdigest()[:10]}")
    os.makedirs(d, exist_ok=True)
    for n, data in st.items():
        with open(os.path.join(d, n), "wb") as f:
            f.write(data)
    with open(os.path.join(d, "VIOLATION.txt"), "w") as f:
        f.write(f"{label}\n{why}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("CAS_BUILD_DIR", os.path.join(ROOT, "build")))
    ap.add_argument("--workload", action="append", choices=sorted(WORKLOADS))
    ap.add_argument("--models", default="strict,ext4")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sample", type=int, default=40, help="crash points between syncs and marks")
    ap.add_argument("--max-points", type=int, default=0, help="at most this many crash points per workload")
    ap.add_argument("--per-point", type=int, default=12, help="states tried per crash point and model")
    ap.add_argument("--budget-states", type=int, default=0, help="check at most this many states per workload")
    ap.add_argument("--seconds", type=float, default=0, help="stop checking after this long")
    ap.add_argument("--keep", help="save violating states here")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    # A SIGTERM unwinds like an error: daemons killed, temporary files gone.
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    args.build = os.path.abspath(args.build)
    args.models = args.models.split(",")
    t0 = time.time()
    deadline = t0 + args.seconds if args.seconds else float("inf")
    tally = dict(built=0, distinct=0, checked=0, repaired=0, violations=[], expected=[], seen=set(),
                 timed_out=False)
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    args.workdir = tempfile.mkdtemp(prefix="cas-powerloss-", dir=base)
    try:
        checker = Checker(args.build, args.workdir, None)
        for w in args.workload or sorted(WORKLOADS):
            explore(args, w, checker, tally, deadline)
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)
    el = time.time() - t0
    fig = dict(states_built=tally["built"], states_distinct=tally["distinct"],
               states_checked=tally["checked"], needed_fsck_repair=tally["repaired"],
               violations=len(tally["violations"]), expected_violations=len(tally["expected"]),
               seconds=round(el, 1), timed_out=tally["timed_out"],
               violation_list=tally["violations"], expected_list=tally["expected"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(fig, f, indent=1)
    print(f"states built {fig['states_built']}, distinct {fig['states_distinct']}, "
          f"checked {fig['states_checked']} (fsck --repair needed {fig['needed_fsck_repair']}), "
          f"violations {fig['violations']}, expected violations {fig['expected_violations']}, "
          f"{fig['seconds']} s")
    return 1 if tally["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
