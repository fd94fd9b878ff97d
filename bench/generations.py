#!/usr/bin/env python3
"""Writes ten daily tar streams of a synthetic tree that changes the way backed-up
data does: small edits, insertions that shift offsets, appends to logs, new and
deleted files, and page writes to a large database-like file.

usage: generations.py OUT_DIR [TREE_MIB] [GENERATIONS]
Deterministic for given arguments.
"""
import io
import os
import random
import sys
import tarfile

WORDS = (
    "backup restore volume snapshot block chunk segment index manifest replica "
    "policy retention daily weekly monthly job agent client server storage tier "
    "error warning info debug commit rollback table row page checksum verify "
).split()


def text_blob(rng, size):
    out = io.StringIO()
    n = 0
    while n < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
        line = f"{rng.randint(0, 99999):05d} {line} {rng.random():.6f}\n"
        out.write(line)
        n += len(line)
    return out.getvalue().encode()[:size]


def binary_blob(rng, size):
    return rng.randbytes(size)


def db_page(rng):
    # Half random (row data), half structured (headers, free space).
    return rng.randbytes(4096) + text_blob(rng, 2048) + bytes(2048)


class Tree:
    def __init__(self, rng, tree_mib):
        self.rng = rng
        self.files = {}
        scale = tree_mib / 256
        for i in range(int(300 * scale)):
            self.files[f"src/mod{i // 30}/file{i}.txt"] = text_blob(rng, rng.randint(4096, 256 * 1024))
        for i in range(int(40 * scale)):
            self.files[f"bin/blob{i}.dat"] = binary_blob(rng, rng.randint(256 * 1024, 4 * 1024 * 1024))
        for i in range(5):
            self.files[f"logs/app{i}.log"] = text_blob(rng, 512 * 1024)
        pages = int(96 * scale * 1024 * 1024) // 8192
        self.files["db/main.db"] = b"".join(db_page(rng) for _ in range(pages))
        self.counter = 0
        self.day = 0
        self.mtimes = {}

    def set(self, name, data):
        self.files[name] = data
        self.mtimes[name] = 1_700_000_000 + self.day * 86400

    def mutate(self):
        rng = self.rng
        texts = [k for k in self.files if k.endswith(".txt")]
        for k in rng.sample(texts, max(1, len(texts) // 20)):  # small in-place edits
            d = bytearray(self.files[k])
            for _ in range(3):
                at = rng.randrange(len(d))
                d[at:at + 8] = rng.randbytes(8)
            self.set(k, bytes(d))
        for k in rng.sample(texts, max(1, len(texts) // 50)):  # insertions that shift offsets
            d = self.files[k]
            at = rng.randrange(len(d))
            self.set(k, d[:at] + text_blob(rng, rng.randint(10, 2000)) + d[at:])
        for i in range(5):  # appends
            name = f"logs/app{i}.log"
            self.set(name, self.files[name] + text_blob(rng, 200 * 1024))
        db = bytearray(self.files["db/main.db"])  # page writes
        pages = len(db) // 8192
        for p in rng.sample(range(pages), max(1, pages // 100)):
            db[p * 8192:(p + 1) * 8192] = db_page(rng)
        self.set("db/main.db", bytes(db))
        for _ in range(3):  # deletions
            k = rng.choice(sorted(self.files))
            if not k.startswith(("db/", "logs/")):
                del self.files[k]
        for _ in range(5):  # new files
            self.counter += 1
            self.set(f"src/new/file{self.counter}.txt", text_blob(rng, rng.randint(4096, 128 * 1024)))
        for _ in range(2):
            self.counter += 1
            self.set(f"bin/new{self.counter}.dat", binary_blob(rng, 1024 * 1024))

    def write_tar(self, path, day):
        with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
            for name in sorted(self.files):
                data = self.files[name]
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = self.mtimes.get(name, 1_700_000_000)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))


def main():
    out = sys.argv[1]
    tree_mib = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    gens = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    os.makedirs(out, exist_ok=True)
    tree = Tree(random.Random(20261126), tree_mib)
    for day in range(gens):
        tree.day = day
        if day:
            tree.mutate()
        tree.write_tar(os.path.join(out, f"gen-{day:02d}.tar"), day)
        print(f"gen-{day:02d}.tar", flush=True)


if __name__ == "__main__":
    main()
