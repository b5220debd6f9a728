// Reading a Ferry process's own figures from its Prometheus text page (/metrics).

/** Sums of every sample of `metric` (all labels) in a Prometheus text page. */
export function metricSum(text: string, metric: string): number {
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${metric}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) sum += Number(m[1]);
  return sum;
}
