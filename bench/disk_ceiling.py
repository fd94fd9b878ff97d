#!/usr/bin/env python3
"""The disk's ceiling for durable segment writes, as hoard does them.

Writes 1 GiB as 4 MiB files: temp file, write, fsync, rename, fsync of the directory,
with 2 and 4 writers in parallel; then the same without fsync, as s3s-fs writes.
Prints MiB/s for each. Run it on the file system that holds the data dir:

    python3 bench/disk_ceiling.py /path/on/that/fs
"""
import os
import sys
import tempfile
import threading
import time

SEGMENT = 4 << 20
TOTAL = 1 << 30


def run(root, writers, durable):
    d = tempfile.mkdtemp(dir=root)
    data = os.urandom(SEGMENT)
    count = TOTAL // SEGMENT

    def writer(first):
        for i in range(first, count, writers):
            tmp, final = f"{d}/t{i}", f"{d}/s{i}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.write(fd, data)
            if durable:
                os.fsync(fd)
            os.close(fd)
            os.rename(tmp, final)
            if durable:
                dfd = os.open(d, os.O_RDONLY)
                os.fsync(dfd)
                os.close(dfd)

    start = time.time()
    threads = [threading.Thread(target=writer, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - start
    for name in os.listdir(d):
        os.unlink(f"{d}/{name}")
    os.rmdir(d)
    return TOTAL / elapsed / (1 << 20)


if __name__ == "__main__":
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    for durable in (True, False):
        for writers in (2, 4):
            mode = "fsync+rename+dir fsync" if durable else "no fsync (page cache only)"
            print(f"{mode:<28} {writers} writers: {run(root, writers, durable):7.0f} MiB/s")
