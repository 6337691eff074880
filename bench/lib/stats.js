/** Order statistics over samples; medians everywhere, as the issue asks. */

export function quantile(samples, q) {
  if (samples.length === 0) return Number.NaN
  const sorted = [...samples].sort((a, b) => a - b)
  const position = (sorted.length - 1) * q
  const low = Math.floor(position)
  const high = Math.ceil(position)
  return sorted[low] + (sorted[high] - sorted[low]) * (position - low)
}

export function median(samples) {
  return quantile(samples, 0.5)
}

/** Interquartile range as [p25, p75], to show how noisy a median is. */
export function iqr(samples) {
  return [quantile(samples, 0.25), quantile(samples, 0.75)]
}
