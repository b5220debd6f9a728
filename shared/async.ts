/** Small promise helpers for shutdown paths. */

/**
 * Waits until every promise has settled or the deadline (ms since epoch) has passed, whichever
 * comes first. Never rejects. Returns true when all settled in time.
 */
export async function settleBy(promises: Iterable<Promise<unknown>>, deadlineMs: number): Promise<boolean> {
  const all = [...promises];
  if (all.length === 0) return true;
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([
    Promise.allSettled(all).then(() => true),
    new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), Math.max(0, deadlineMs - Date.now()));
    }),
  ]);
  clearTimeout(timer);
  return settled;
}
