/**
 * Bounded per-topic state for the Kafka sink: topic names come from agents and HTTP clients, so
 * nothing keyed by them may grow without bound.
 *
 * - LruMap: a Map holding at most `max` entries; setting one more drops the least recently used
 *   (a `get` counts as a use, a `peek` does not).
 * - CappedLabels: Prometheus label values for topics. A value is labelled as itself only when it
 *   is admitted (the caller knows the topic exists in Kafka) and fewer than `max` values have
 *   been labelled so far; everything else is `_other`. A value labelled once keeps its label, so
 *   a series never changes name; at most `max` + 1 values ever exist.
 */

export class LruMap<K, V> {
  private readonly map = new Map<K, V>();

  constructor(readonly max: number) {}

  get size(): number {
    return this.map.size;
  }

  get(key: K): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  peek(key: K): V | undefined {
    return this.map.get(key);
  }

  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value as K);
  }

  delete(key: K): void {
    this.map.delete(key);
  }
}

export const OTHER_LABEL = '_other';

export class CappedLabels {
  private readonly labelled = new Set<string>();

  constructor(readonly max: number) {}

  get size(): number {
    return this.labelled.size;
  }

  label(value: string, admit: boolean): string {
    if (this.labelled.has(value)) return value;
    if (!admit || this.labelled.size >= this.max) return OTHER_LABEL;
    this.labelled.add(value);
    return value;
  }
}
