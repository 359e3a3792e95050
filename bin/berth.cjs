#!/usr/bin/env node
// The driver's entry point. libuv sizes its thread pool once, at its first
// use, from UV_THREADPOOL_SIZE, and Node's ES module loader already uses the
// pool to read the driver's own modules: the size has to be in the
// environment before the first import, which only a CommonJS entry (loaded
// synchronously) can arrange. Setting it inside dist/driver/main.js came too
// late and left the default 4 threads.
// 16 threads: a few calls stuck in the kernel (a dead disk or NFS server
// under a pool) cannot take every thread and stall all other fs work, and
// the fsyncs of concurrent creates share journal commits instead of queueing
// four at a time (bench/provision: about 1.4x the share creates of 4 threads).
'use strict';
process.env.UV_THREADPOOL_SIZE ??= '16';
import('../dist/driver/main.js').then(
  (main) => main.run(),
  (err) => {
    process.stderr.write(`berth: ${err.message}\n`);
    process.exit(1);
  },
);
