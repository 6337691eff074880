/**
 * Preloaded (node --require) into a server by bench/gc-phases.js: once a second, one JSON line on
 * stdout (the server logs on stderr) with the garbage collections of that second by kind, the old
 * space in use and the bytes of live ArrayBuffers (what V8 11 adds to the old generation's size when it
 * decides to start marking, until a scavenge's sweep frees them).
 */
const {constants, PerformanceObserver} = require('node:perf_hooks')
const v8 = require('node:v8')

const counts = {majors: 0, minors: 0}
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    const kind = entry.detail?.kind
    if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) counts.majors++
    else if (kind === constants.NODE_PERFORMANCE_GC_MINOR) counts.minors++
  }
}).observe({entryTypes: ['gc']})

const MIB = 1024 * 1024
setInterval(() => {
  const old = v8.getHeapSpaceStatistics().find((space) => space.space_name === 'old_space')
  const line = {arrayBuffersMiB: process.memoryUsage().arrayBuffers / MIB, majors: counts.majors, minors: counts.minors, oldMiB: old.space_used_size / MIB}
  process.stdout.write(`${JSON.stringify(line)}\n`)
  counts.majors = 0
  counts.minors = 0
}, 1000).unref()
