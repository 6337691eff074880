/**
 * The alternating runner: every series of a group is measured once per round, each round starting one
 * series later (A B C, B C A, C A B, ...), so slow drift and bursts of load from other processes hit every
 * series alike, and so does whatever a measurement leaves behind for the next one (a busy page cache,
 * a core still clocked up, the kernel's socket state): in a fixed order, the same series would always
 * follow the same one.
 * Figures are medians over rounds; comparisons are ratios of medians measured in the same run.
 */
import {iqr, median} from './stats.js'

/**
 * @param group {{id, title, runs, warmup?, series: Array<{id, label, unit, measure: (round) => Promise<number|{value, extra?}>|number|{value, extra?}, setup?: () => unknown}>, derived?: Array<{id, label, unit, from: (round) => number}>}}
 * @param log line logger for progress
 * @returns {{samples: Record<string, number[]>, stats: Record<string, {label, unit, median, iqr, n}>}}
 */
export async function runAlternating(group, log = () => {}) {
  const samples = {}
  const labels = {}
  for (const series of [...group.series, ...(group.extra ?? []), ...(group.derived ?? [])]) {
    samples[series.id] = []
    labels[series.id] = series
  }

  const once = async (round, index) => {
    const count = group.series.length
    for (let k = 0; k < count; k++) {
      const series = group.series[(k + index) % count]
      // eslint-disable-next-line no-await-in-loop -- strictly one measurement at a time
      if (series.setup) await series.setup()
      // eslint-disable-next-line no-await-in-loop -- strictly one measurement at a time
      const result = await series.measure(round)
      const {extra, value} = typeof result === 'number' ? {value: result} : result
      round[series.id] = value
      for (const [id, extraValue] of Object.entries(extra ?? {})) {
        round[id] = extraValue
        samples[id] ??= []
      }
    }

    for (const derived of group.derived ?? []) round[derived.id] = derived.from(round)
    return round
  }

  for (let i = 0; i < (group.warmup ?? 1); i++) {
    // eslint-disable-next-line no-await-in-loop -- sequential on purpose
    await once({}, i)
  }

  for (let i = 0; i < group.runs; i++) {
    // eslint-disable-next-line no-await-in-loop -- sequential on purpose
    const round = await once({}, i)
    for (const [id, value] of Object.entries(round)) samples[id].push(value)
    log(`  ${group.id} round ${i + 1}/${group.runs}: ${Object.entries(round).map(([id, value]) => `${id}=${format(value)}`).join(' ')}`)
  }

  const stats = {}
  for (const [id, values] of Object.entries(samples)) {
    stats[id] = {iqr: iqr(values), label: labels[id]?.label ?? id, median: median(values), n: values.length, unit: labels[id]?.unit ?? 'ms'}
  }

  return {samples, stats}
}

function format(value) {
  return value >= 100 ? value.toFixed(0) : value.toFixed(1)
}
