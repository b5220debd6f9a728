/**
 * `dead-letters list`: the dead-letter stream's summary (count, bytes, limits, how many were
 * replayed and how many the limits discarded), then every dead letter in sequence order. Text
 * is one line per dead letter plus its error; `--json` is one JSON document
 * `{ ...summary, exists, deadLetters: [DeadLetter, ...] }`. Both are written as the stream is
 * read (output.ts), so memory stays bounded whatever the stream holds.
 */
import { formatBytes } from '../../shared/cli.js';
import { describeDeadLetter, type DeadLetter } from './deadletter.js';
import type { DeadLetterSource, DeadLetterSummary } from './stream.js';
import { JsonDocument, type Output } from './output.js';

function limits(s: DeadLetterSummary): string {
  const bytes = s.maxBytes < 0 ? 'no size limit' : `at most ${formatBytes(s.maxBytes)}`;
  const days = s.maxAgeMs / 86_400_000;
  const age = s.maxAgeMs <= 0 ? 'no age limit' : days >= 1 ? `at most ${+days.toFixed(1)} days old` : `at most ${+(s.maxAgeMs / 1000).toFixed(1)} s old`;
  return `${bytes}, ${age}; beyond, the oldest are discarded`;
}

export function summaryLine(s: DeadLetterSummary): string {
  return `${s.stream}: ${s.messages} dead letter${s.messages === 1 ? '' : 's'}, ${formatBytes(s.bytes)} (${limits(s)}); ${s.replayed} replayed, ${s.discarded} discarded by the limits`;
}

function textLine(d: DeadLetter): string {
  const parts = [
    `seq ${d.seq}`,
    d.time,
    d.reason ?? '(no reason)',
    `msg ${d.msgId ?? '(no id)'}`,
    `subject ${d.subject ?? '?'}`,
    `topic ${d.topic ?? '?'}`,
    formatBytes(d.bytes),
  ];
  if (!d.replayable) parts.push('CANNOT BE REPLAYED (does not decode)');
  return `${parts.join('  ')}\n    error: ${d.error ?? '(none)'}${d.decodeError && d.decodeError !== d.error ? `\n    decode: ${d.decodeError}` : ''}\n`;
}

export async function listDeadLetters(source: DeadLetterSource, streamName: string, out: Output, json: boolean): Promise<void> {
  const summary = await source.summary();
  if (!summary) {
    if (json) out.write(`${JSON.stringify({ stream: streamName, exists: false, deadLetters: [] })}\n`);
    else out.write(`${streamName} does not exist (nats.deadLetterStream; a gateway creates it when it starts): no dead letters\n`);
    return;
  }
  const doc = json ? new JsonDocument(out, { ...summary, exists: true }, 'deadLetters') : undefined;
  if (!doc) out.write(`${summaryLine(summary)}\n`);
  for await (const m of source.all()) {
    const { deadLetter } = describeDeadLetter(m);
    if (doc) doc.item(deadLetter);
    else out.write(textLine(deadLetter));
  }
  doc?.end();
}
